// The bgp backend's cluster settings are checked at `cluster init`, with the field named, so a bad
// value never reaches BIRD; settings without them are stored as before (older stores unchanged).
import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidError } from "./errors.js";
import { normalizeSettings } from "./validate.js";

const base = { clusterCIDRs: ["10.244.0.0/16"], backend: "bgp" as const };

test("bgp.asNumber: stored when valid, absent when not given", () => {
  assert.deepEqual(normalizeSettings({ ...base, bgp: { asNumber: 65001 } }).bgp, { asNumber: 65001 });
  assert.equal("bgp" in normalizeSettings(base), false);
  assert.deepEqual(normalizeSettings({ ...base, bgp: { asNumber: 4294967295 } }).bgp, { asNumber: 4294967295 });
});

test("a malformed AS, an unknown field or bgp settings for another backend are refused, naming the field", () => {
  const bad: [unknown, RegExp][] = [
    [{ asNumber: 0 }, /^bgp\.asNumber: 0 is not an AS number/],
    [{ asNumber: 4294967296 }, /^bgp\.asNumber: 4294967296/],
    [{ asNumber: -5 }, /^bgp\.asNumber/],
    [{ asNumber: 1.5 }, /^bgp\.asNumber/],
    [{ asNumber: "64512" }, /^bgp\.asNumber: "64512"/],
    [{ asNumbr: 64512 }, /^bgp\.asNumbr: unknown field/],
    ["64512", /^bgp must be an object/],
  ];
  for (const [bgp, re] of bad)
    assert.throws(
      () => normalizeSettings({ ...base, bgp } as unknown as Parameters<typeof normalizeSettings>[0]),
      (e: unknown) => e instanceof InvalidError && re.test(e.message),
      JSON.stringify(bgp),
    );
  assert.throws(
    () => normalizeSettings({ ...base, backend: "vxlan", bgp: { asNumber: 64512 } }),
    /bgp settings apply only to backend bgp, not vxlan/,
  );
});
