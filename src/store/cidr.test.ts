import { test } from "node:test";
import assert from "node:assert/strict";
import {
  canonicalCidr,
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIp,
  nthSubnet,
  parseCidr,
  parseIp,
  pickFreeSubnet,
  subnetCount,
  subnetIndex,
} from "./cidr.js";
import { InvalidError } from "./errors.js";

test("IPv4 and IPv6 addresses round-trip in canonical form", () => {
  for (const [input, out] of [
    ["10.244.3.0", "10.244.3.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["FD00:10:244:0:0:0:0:0", "fd00:10:244::"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["::", "::"],
    ["::1", "::1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["::ffff:192.0.2.1", "::ffff:c000:201"],
  ]) {
    const { family, value } = parseIp(input);
    assert.equal(formatIp(family, value), out, input);
  }
});

test("CIDRs are parsed strictly and canonicalized", () => {
  assert.equal(canonicalCidr("10.244.0.0/16"), "10.244.0.0/16");
  assert.equal(canonicalCidr("FD00:10:244::/48"), "fd00:10:244::/48");
  assert.throws(() => parseCidr("10.244.1.0/16"), (e: unknown) => e instanceof InvalidError && /did you mean 10\.244\.0\.0\/16/.test(e.message));
  assert.throws(() => parseCidr("10.0.0.0/33"), InvalidError);
  assert.throws(() => parseCidr("10.0.0.0"), InvalidError);
  assert.throws(() => parseCidr("banana/8"), InvalidError);
  assert.equal(formatCidr(parseCidr("10.1.2.3/16", false)), "10.1.0.0/16");
});

test("IPv4 cluster CIDR carves into node /24s", () => {
  const c = parseCidr("10.244.0.0/16");
  assert.equal(subnetCount(c, 24), 256n);
  assert.equal(formatCidr(nthSubnet(c, 24, 0n)), "10.244.0.0/24");
  assert.equal(formatCidr(nthSubnet(c, 24, 3n)), "10.244.3.0/24");
  assert.equal(formatCidr(nthSubnet(c, 24, 255n)), "10.244.255.0/24");
  assert.throws(() => nthSubnet(c, 24, 256n), RangeError);
  assert.equal(subnetIndex(c, 24, parseCidr("10.244.7.0/24")), 7n);
  assert.equal(subnetIndex(c, 24, parseCidr("10.245.7.0/24")), undefined);
  assert.equal(subnetIndex(c, 24, parseCidr("10.244.7.0/25")), undefined);
  assert.throws(() => subnetCount(c, 15), InvalidError);
});

test("IPv6 cluster CIDR carves into node /64s, even a huge pool", () => {
  const c = parseCidr("fd00:10:244::/48");
  assert.equal(subnetCount(c, 64), 65536n);
  assert.equal(formatCidr(nthSubnet(c, 64, 0n)), "fd00:10:244::/64");
  assert.equal(formatCidr(nthSubnet(c, 64, 1n)), "fd00:10:244:1::/64");
  assert.equal(formatCidr(nthSubnet(c, 64, 65535n)), "fd00:10:244:ffff::/64");
  const big = parseCidr("fd00::/8");
  assert.equal(subnetCount(big, 64), 1n << 56n);
  const pick = pickFreeSubnet(big, 64, new Set(), "node-a");
  assert.ok(pick && cidrContains(big, pick) && pick.prefix === 64);
});

test("containment and overlap", () => {
  assert.ok(cidrContains(parseCidr("10.0.0.0/8"), parseCidr("10.9.0.0/16")));
  assert.ok(!cidrContains(parseCidr("10.9.0.0/16"), parseCidr("10.0.0.0/8")));
  assert.ok(cidrsOverlap(parseCidr("10.9.0.0/16"), parseCidr("10.0.0.0/8")));
  assert.ok(!cidrsOverlap(parseCidr("10.9.0.0/16"), parseCidr("10.10.0.0/16")));
  assert.ok(!cidrsOverlap(parseCidr("10.0.0.0/8"), parseCidr("fd00::/8")));
});

test("pickFreeSubnet skips taken subnets and fills the pool exactly", () => {
  const c = parseCidr("10.0.0.0/28");
  const taken = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const p = pickFreeSubnet(c, 30, taken, `n${i}`);
    assert.ok(p, `subnet ${i}`);
    const text = formatCidr(p);
    assert.ok(!taken.has(text));
    taken.add(text);
  }
  assert.deepEqual([...taken].sort(), ["10.0.0.0/30", "10.0.0.12/30", "10.0.0.4/30", "10.0.0.8/30"]);
  assert.equal(pickFreeSubnet(c, 30, taken, "n5"), undefined);
  // The same seed gives the same first choice: a restarted node tends to land where it was.
  assert.equal(formatCidr(pickFreeSubnet(parseCidr("10.244.0.0/16"), 24, new Set(), "node-x")!), formatCidr(pickFreeSubnet(parseCidr("10.244.0.0/16"), 24, new Set(), "node-x")!));
});
