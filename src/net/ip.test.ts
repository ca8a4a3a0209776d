// Addresses: the RFC 5952 writer, and the address assertions of the five parsers this module
// replaced (ipam/addr, store/cidr, k8s/ipaddr, backends/common/ipnet, kernel/netlink/message).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  canonicalIp,
  canonicalIpOrThrow,
  formatIp,
  InvalidAddress,
  ipFamily,
  ipFromBytes,
  ipOrThrow,
  ipToBytes,
  parseIp,
} from "./ip.js";

const v6 = (groups: number[]) => groups.reduce((a, g) => (a << 16n) | BigInt(g), 0n);

test("addresses are written as iproute2 and Kubernetes print them (RFC 5952)", () => {
  assert.equal(formatIp(4, 0x0af40102n), "10.244.1.2");
  assert.equal(formatIp(4, 0n), "0.0.0.0");
  assert.equal(formatIp(6, 0n), "::");
  assert.equal(formatIp(6, 1n), "::1");
  assert.equal(formatIp(6, v6([0xfd00, 0, 0, 0, 0, 0, 0, 1])), "fd00::1");
  // A single zero group is not compressed; the longest run wins; the first run wins a tie.
  assert.equal(formatIp(6, v6([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1])), "2001:db8:0:1:1:1:1:1");
  assert.equal(formatIp(6, v6([0x2001, 0, 0, 1, 0, 0, 0, 1])), "2001:0:0:1::1");
  assert.equal(formatIp(6, v6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1])), "2001:db8::1:0:0:1");
  assert.equal(formatIp(6, v6([0xfe80, 0, 0, 0, 0, 0, 0, 0])), "fe80::");
});

// was src/store/cidr.test.ts
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
    const { family, value } = ipOrThrow(input);
    assert.equal(formatIp(family, value), out, input);
  }
});

// was src/k8s/ipaddr.test.ts
test("canonical addresses", () => {
  assert.equal(canonicalIp("fd00:0:0::1"), "fd00::1");
  assert.equal(canonicalIp("FD00:10:244:1:0:0:0:0"), "fd00:10:244:1::");
  assert.equal(canonicalIp("::ffff:10.0.0.1"), "::ffff:a00:1");
  assert.equal(canonicalIp("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
  assert.equal(canonicalIp("10.1.2.3"), "10.1.2.3");
  assert.equal(canonicalIp("10.1.2"), null);
  assert.equal(canonicalIp("::"), "::");
});

// was src/backends/common/ipnet.test.ts (addresses) and src/ipam/allocator.test.ts (canonical forms)
test("canonical text matches what iproute2 prints (RFC 5952)", () => {
  assert.equal(canonicalIpOrThrow("FD00:0244:0002:0000:0000:0000:0000:0000"), "fd00:244:2::");
  assert.equal(canonicalIpOrThrow("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(canonicalIpOrThrow("::"), "::");
  assert.equal(canonicalIpOrThrow("::ffff:10.0.0.1"), "::ffff:a00:1");
  assert.equal(canonicalIpOrThrow("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
  assert.equal(canonicalIp("fd00:0000:0:0:1:0:0:0"), "fd00::1:0:0:0");
  assert.equal(canonicalIp("2001:db8::"), "2001:db8::");
});

test("edge cases every former parser had to agree on", () => {
  // IPv4-mapped and IPv4-compatible IPv6: the dotted tail is two hex groups.
  assert.deepEqual(parseIp("::ffff:10.1.2.3"), { family: 6, value: 0xffff0a010203n });
  assert.deepEqual(parseIp("::10.1.2.3"), { family: 6, value: 0x0a010203n });
  assert.deepEqual(parseIp("64:ff9b::192.0.2.33"), { family: 6, value: v6([0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x221]) });
  // ...and inet_ntop's form is available for what `ip` prints.
  assert.equal(formatIp(6, 0xffff0a010203n, { dottedV4Tail: true }), "::ffff:10.1.2.3");
  assert.equal(formatIp(6, 0x0a010203n, { dottedV4Tail: true }), "::10.1.2.3");
  assert.equal(formatIp(6, 1n, { dottedV4Tail: true }), "::1");
  assert.equal(formatIp(6, 0n, { dottedV4Tail: true }), "::");
  // Leading zeros in a dotted quad are refused (octal or decimal? neither); in hex groups they are fine.
  for (const bad of ["010.1.2.3", "10.1.2.03", "::ffff:010.1.2.3"]) assert.equal(parseIp(bad), null, bad);
  assert.equal(canonicalIp("0fd0::01"), "fd0::1");
  // Zone ids are refused: no address weft handles is scoped to a link, and '%' must not reach ip -batch.
  assert.equal(parseIp("fe80::1%eth0"), null);
  assert.equal(parseIp("fe80::1%1"), null);
  // Not addresses at all.
  for (const bad of [
    "",
    " 10.1.2.3",
    "10.1.2.3 ",
    "10.1.2.256",
    "1.2.3.4.5",
    "1::2::3",
    "12345::1",
    "1:2:3:4:5:6:7:8:9",
    "::g",
    "10.0.0.0/8",
    "localhost",
  ]) {
    assert.equal(parseIp(bad), null, JSON.stringify(bad));
  }
  assert.equal(ipFamily("10.0.0.1"), 4);
  assert.equal(ipFamily("fd00::1"), 6);
  assert.equal(ipFamily("fd00::1%eth0"), null);
  // The extremes.
  assert.equal(canonicalIp("255.255.255.255"), "255.255.255.255");
  assert.equal(canonicalIp("FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF"), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
});

test("the throwing wrappers carry the caller's error type", () => {
  assert.throws(
    () => ipOrThrow("10.1.2"),
    (e: unknown) => e instanceof InvalidAddress && /"10\.1\.2" is not an IP address/.test(e.message),
  );
  class Mine extends Error {}
  assert.throws(() => ipOrThrow("fe80::1%eth0", (m) => new Mine(m)), Mine);
  assert.throws(() => canonicalIpOrThrow("nope", (m) => new Mine(m)), Mine);
});

test("bytes in network order, as netlink carries them", () => {
  assert.deepEqual(ipToBytes(ipOrThrow("10.80.0.2")), Buffer.from([10, 80, 0, 2]));
  assert.deepEqual(ipToBytes(ipOrThrow("::1")), Buffer.from([...Array(15).fill(0), 1]));
  assert.deepEqual(ipToBytes(ipOrThrow("fd80::2")).toString("hex"), "fd800000000000000000000000000002");
  assert.deepEqual(ipFromBytes(Buffer.from([0, 0, 0, 0])), { family: 4, value: 0n });
  assert.deepEqual(ipFromBytes(Buffer.alloc(16, 0xff)), { family: 6, value: (1n << 128n) - 1n });
  assert.equal(ipFromBytes(Buffer.alloc(5)), null);
  assert.equal(ipFromBytes(Buffer.alloc(0)), null);
});
