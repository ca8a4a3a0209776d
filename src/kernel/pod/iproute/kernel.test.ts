// IprouteKernel against the real kernel, in namespaces the test makes: the PodKernel case suite
// (../cases.ts), then what only this implementation does (its batch input, its batch failures).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createNetns, globalAddrs, removeAllNetns } from "../../../testlib/netns.js";
import * as validate from "../../validate.js";
import { podKernelCases } from "../cases.js";
import { parseBatchFailures } from "./kernel.js";

after(removeAllNetns);

podKernelCases("iproute");

test("names and paths that could change an ip -batch line are rejected", () => {
  assert.throws(() => validate.netnsPath("/run/netns/x\nlink del lo"), /whitespace/);
  assert.throws(() => validate.netnsPath("/run/netns/a b"), /whitespace/);
  assert.throws(() => validate.netnsPath('/run/netns/"x'), /quotes/);
  assert.throws(() => validate.ifname("eth0\nlink"), /whitespace/);
  for (const bad of ['eth"0', "eth'0", "eth#0", "eth\\0", "eth 0"]) {
    assert.throws(
      () => validate.ifname(bad),
      (e: unknown) => e instanceof validate.InvalidKernelInput && /quote, '#' or a backslash/.test(e.message),
      bad,
    );
  }
  assert.throws(() => validate.ifname("eth%d"), /template/);
  assert.equal(validate.ifname("wf0123456789a"), "wf0123456789a");
  assert.equal(validate.netnsPath("/proc/123/ns/net"), "/proc/123/ns/net");
});

test("ip -force -batch failures are attributed to their lines", async () => {
  const ns = await createNetns("b");
  const r = await ns.status(["ip", "-force", "-batch", "-"], {
    input:
      "route add default dev lo\nroute add default dev lo\nroute add 192.0.2.9 dev nonexist0\naddr add 192.0.2.1/32 dev lo\n",
  });
  assert.notEqual(r.code, 0);
  const f = parseBatchFailures(r.stderr);
  assert.deepEqual(
    f.map((x) => x.line),
    [2, 3],
  );
  assert.match(f[0].message, /File exists/);
  assert.match(f[1].message, /nonexist0/);
  assert.deepEqual(await globalAddrs(ns, "lo"), ["192.0.2.1/32"], "later lines still ran");
});
