// Prefixes: the CIDR assertions of the parsers this module replaced (store/cidr, k8s/ipaddr,
// backends/common/ipnet, ipam/addr), each under the options its old contract had.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  canonicalCidr,
  cidrContains,
  cidrHas,
  cidrMinus,
  cidrOrNull,
  cidrOrThrow,
  cidrsOverlap,
  formatCidr,
  InvalidCidr,
  isStrictSubset,
  KERNEL_PREFIX,
  nthSubnet,
  parseCidr,
  pickFreeSubnet,
  rangeContains,
  subnetCount,
  subnetIndex,
} from "./cidr.js";
import { formatIp, ipOrThrow } from "./ip.js";

const strict = (text: string) => cidrOrThrow(text);
const go = (text: string) => cidrOrNull(text, { hostBits: "clear" });

// ---- was src/store/cidr.test.ts ----

test("CIDRs are parsed strictly and canonicalized", () => {
  assert.equal(canonicalCidr("10.244.0.0/16"), "10.244.0.0/16");
  assert.equal(canonicalCidr("FD00:10:244::/48"), "fd00:10:244::/48");
  assert.throws(
    () => strict("10.244.1.0/16"),
    (e: unknown) => e instanceof InvalidCidr && /did you mean 10\.244\.0\.0\/16/.test(e.message),
  );
  assert.throws(() => strict("10.0.0.0/33"), InvalidCidr);
  assert.throws(() => strict("10.0.0.0"), InvalidCidr);
  assert.throws(() => strict("banana/8"), InvalidCidr);
  assert.equal(formatCidr(cidrOrThrow("10.1.2.3/16", { hostBits: "clear" })), "10.1.0.0/16");
});

test("IPv4 cluster CIDR carves into node /24s", () => {
  const c = strict("10.244.0.0/16");
  assert.equal(subnetCount(c, 24), 256n);
  assert.equal(formatCidr(nthSubnet(c, 24, 0n)), "10.244.0.0/24");
  assert.equal(formatCidr(nthSubnet(c, 24, 3n)), "10.244.3.0/24");
  assert.equal(formatCidr(nthSubnet(c, 24, 255n)), "10.244.255.0/24");
  assert.throws(() => nthSubnet(c, 24, 256n), RangeError);
  assert.equal(subnetIndex(c, 24, strict("10.244.7.0/24")), 7n);
  assert.equal(subnetIndex(c, 24, strict("10.245.7.0/24")), undefined);
  assert.equal(subnetIndex(c, 24, strict("10.244.7.0/25")), undefined);
  assert.throws(() => subnetCount(c, 15), InvalidCidr);
});

test("IPv6 cluster CIDR carves into node /64s, even a huge pool", () => {
  const c = strict("fd00:10:244::/48");
  assert.equal(subnetCount(c, 64), 65536n);
  assert.equal(formatCidr(nthSubnet(c, 64, 0n)), "fd00:10:244::/64");
  assert.equal(formatCidr(nthSubnet(c, 64, 1n)), "fd00:10:244:1::/64");
  assert.equal(formatCidr(nthSubnet(c, 64, 65535n)), "fd00:10:244:ffff::/64");
  const big = strict("fd00::/8");
  assert.equal(subnetCount(big, 64), 1n << 56n);
  const pick = pickFreeSubnet(big, 64, new Set(), "node-a");
  assert.ok(pick && cidrContains(big, pick) && pick.prefix === 64);
});

test("containment and overlap", () => {
  assert.ok(cidrContains(strict("10.0.0.0/8"), strict("10.9.0.0/16")));
  assert.ok(!cidrContains(strict("10.9.0.0/16"), strict("10.0.0.0/8")));
  assert.ok(cidrsOverlap(strict("10.9.0.0/16"), strict("10.0.0.0/8")));
  assert.ok(!cidrsOverlap(strict("10.9.0.0/16"), strict("10.10.0.0/16")));
  assert.ok(!cidrsOverlap(strict("10.0.0.0/8"), strict("fd00::/8")));
});

test("pickFreeSubnet skips taken subnets and fills the pool exactly", () => {
  const c = strict("10.0.0.0/28");
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
  assert.equal(
    formatCidr(pickFreeSubnet(strict("10.244.0.0/16"), 24, new Set(), "node-x")!),
    formatCidr(pickFreeSubnet(strict("10.244.0.0/16"), 24, new Set(), "node-x")!),
  );
});

// ---- was src/k8s/ipaddr.test.ts (Go's net.ParseCIDR contract: null, host bits cleared) ----

test("CIDR parsing: host bits cleared, bad prefixes rejected", () => {
  const c = go("10.1.2.3/16");
  assert.ok(c);
  assert.equal(formatIp(c.family, c.base), "10.1.0.0");
  assert.equal(go("10.0.0.0/33"), null);
  assert.equal(go("fd00::/129"), null);
  assert.equal(go("10.0.0.0"), null);
  assert.ok(go("0.0.0.0/0"));
  assert.ok(go("::/0"));
});

test("strict subset and cidr minus except", () => {
  const outer = go("10.0.0.0/8")!;
  assert.ok(isStrictSubset(outer, go("10.1.0.0/16")!));
  assert.ok(!isStrictSubset(outer, go("10.0.0.0/8")!));
  assert.ok(!isStrictSubset(outer, go("11.0.0.0/16")!));
  const r = cidrMinus(go("10.0.0.0/24")!, [go("10.0.0.128/25")!, go("10.0.0.0/30")!]);
  assert.deepEqual(
    r.map((x) => `${formatIp(4, x.first)}-${formatIp(4, x.last)}`),
    ["10.0.0.4-10.0.0.127"],
  );
  const all6 = cidrMinus(go("::/0")!, [go("fd00::/8")!]);
  assert.deepEqual(
    all6.map((x) => `${formatIp(6, x.first)}-${formatIp(6, x.last)}`),
    ["::-fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
  );
  assert.ok(rangeContains(r[0], ipOrThrow("10.0.0.100")));
  assert.ok(!rangeContains(r[0], ipOrThrow("10.0.0.200")));
  assert.ok(!rangeContains(r[0], ipOrThrow("::ffff:10.0.0.100")), "an IPv4-mapped IPv6 address is IPv6");
});

// ---- was src/backends/common/ipnet.test.ts (kernel form: bare address = host prefix, host bits cleared) ----

test("canonical text matches what iproute2 prints (RFC 5952)", () => {
  assert.equal(canonicalCidr("10.244.2.77/24", KERNEL_PREFIX), "10.244.2.0/24");
  assert.equal(canonicalCidr("fd00:244:2::5/64", KERNEL_PREFIX), "fd00:244:2::/64");
  assert.equal(canonicalCidr("10.0.0.1", KERNEL_PREFIX), "10.0.0.1/32");
  assert.throws(() => cidrOrThrow("10.0.0.0/33", KERNEL_PREFIX), /prefix/);
  assert.throws(() => cidrOrThrow("10.0.0.256/24", KERNEL_PREFIX), /not an IP address/);
});

test("containment, overlap and the flannel VTEP address", () => {
  const n = cidrOrThrow("10.200.0.0/24", KERNEL_PREFIX);
  assert.ok(cidrHas(n, ipOrThrow("10.200.0.77")));
  assert.ok(!cidrHas(n, ipOrThrow("10.201.0.1")));
  assert.ok(!cidrHas(n, ipOrThrow("fd00::1")));
  assert.ok(cidrsOverlap(cidrOrThrow("10.244.0.0/16", KERNEL_PREFIX), cidrOrThrow("10.244.3.0/24", KERNEL_PREFIX)));
  assert.ok(!cidrsOverlap(cidrOrThrow("10.244.2.0/24", KERNEL_PREFIX), cidrOrThrow("10.244.3.0/24", KERNEL_PREFIX)));
  const first = (t: string) => {
    const c = cidrOrThrow(t, KERNEL_PREFIX);
    return formatIp(c.family, c.base);
  };
  assert.equal(first("10.244.3.0/24"), "10.244.3.0");
  assert.equal(first("fd00:244:3::/64"), "fd00:244:3::");
});

// ---- was src/ipam/allocator.test.ts (pools: strict) ----

test("rejects CIDRs with host bits or bad prefixes", () => {
  assert.throws(() => strict("10.1.0.1/24"), /host bits set; the network is 10.1.0.0\/24/);
  assert.throws(() => strict("10.1.0.0/33"), /too long/);
  assert.throws(() => strict("nonsense"), /not a CIDR/);
  assert.ok(cidrHas(strict("fd00:0:0:1::/64"), ipOrThrow("fd00:0:0:1:ffff::5")));
  assert.ok(!cidrHas(strict("fd00:0:0:1::/64"), ipOrThrow("fd00:0:0:2::5")));
});

// ---- the edge cases, in one place ----

test("edge cases: /0, host prefixes, zone ids, bare addresses, text around the prefix", () => {
  // /0 of each family holds every address of that family and none of the other.
  const all4 = strict("0.0.0.0/0");
  const all6 = strict("::/0");
  assert.ok(cidrHas(all4, ipOrThrow("255.255.255.255")) && cidrHas(all4, ipOrThrow("0.0.0.0")));
  assert.ok(!cidrHas(all4, ipOrThrow("::ffff:1.2.3.4")));
  assert.ok(
    cidrHas(all6, ipOrThrow("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")) && !cidrHas(all6, ipOrThrow("1.2.3.4")),
  );
  assert.equal(subnetCount(all4, 8), 256n);
  assert.equal(go("10.1.2.3/0") && formatCidr(go("10.1.2.3/0")!), "0.0.0.0/0");
  // /32 and /128 hold exactly one address.
  assert.ok(
    cidrHas(strict("10.0.0.1/32"), ipOrThrow("10.0.0.1")) && !cidrHas(strict("10.0.0.1/32"), ipOrThrow("10.0.0.2")),
  );
  assert.ok(
    cidrHas(strict("fd00::1/128"), ipOrThrow("fd00::1")) && !cidrHas(strict("fd00::1/128"), ipOrThrow("fd00::2")),
  );
  assert.equal(canonicalCidr("FD00::1/128"), "fd00::1/128");
  assert.throws(() => strict("10.0.0.1/33"), /at most \/32/);
  assert.throws(() => strict("fd00::/129"), /at most \/128/);
  assert.throws(() => strict("fd00::/1000"), /not a CIDR/);
  // IPv4-mapped IPv6 prefixes are IPv6 prefixes.
  assert.equal(canonicalCidr("::ffff:10.0.0.0/104"), "::ffff:a00:0/104");
  // Zone ids and leading zeros in the address are refused, with the reason.
  assert.equal(parseCidr("fe80::%eth0/64").ok, false);
  assert.throws(() => strict("fe80::%eth0/64"), /"fe80::%eth0" is not an IP address/);
  assert.equal(go("010.0.0.0/8"), null);
  // A bare address is a host prefix only where asked for (the kernel's form).
  assert.equal(cidrOrNull("10.0.0.1"), null);
  assert.equal(formatCidr(cidrOrThrow("fd00::1", KERNEL_PREFIX)), "fd00::1/128");
  // Nothing around the parts: trimming is the caller's choice.
  for (const bad of [
    "10.0.0.0 /8",
    " 10.0.0.0/8",
    "10.0.0.0/8 ",
    "10.0.0.0/8/8",
    "10.0.0.0/",
    "/8",
    "10.0.0.0/-1",
    "10.0.0.0/+8",
    "10.0.0.0/0x8",
  ]) {
    assert.equal(cidrOrNull(bad, KERNEL_PREFIX), null, JSON.stringify(bad));
  }
  // The result carries the message; the throwing wrapper carries the caller's error type.
  const r = parseCidr("10.1.0.1/24");
  assert.ok(!r.ok && /the network is 10\.1\.0\.0\/24/.test(r.error));
  class Mine extends Error {}
  assert.throws(() => cidrOrThrow("banana", {}, (m) => new Mine(m)), Mine);
});
