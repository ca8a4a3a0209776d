import assert from "node:assert/strict";
import { test } from "node:test";
import { canonicalAddr, canonicalCidr, contains, firstAddress, overlaps, parseCidr } from "./ipnet.js";

test("canonical text matches what iproute2 prints (RFC 5952)", () => {
  assert.equal(canonicalAddr("FD00:0244:0002:0000:0000:0000:0000:0000"), "fd00:244:2::");
  assert.equal(canonicalAddr("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(canonicalAddr("::"), "::");
  assert.equal(canonicalAddr("::ffff:10.0.0.1"), "::ffff:a00:1");
  assert.equal(canonicalAddr("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
  assert.equal(canonicalCidr("10.244.2.77/24"), "10.244.2.0/24");
  assert.equal(canonicalCidr("fd00:244:2::5/64"), "fd00:244:2::/64");
  assert.equal(canonicalCidr("10.0.0.1"), "10.0.0.1/32");
  assert.throws(() => parseCidr("10.0.0.0/33"), /prefix/);
  assert.throws(() => parseCidr("10.0.0.256/24"), /not an IP address/);
});

test("containment, overlap and the flannel VTEP address", () => {
  const n = parseCidr("10.200.0.0/24");
  assert.ok(contains(n, "10.200.0.77"));
  assert.ok(!contains(n, "10.201.0.1"));
  assert.ok(!contains(n, "fd00::1"));
  assert.ok(overlaps(parseCidr("10.244.0.0/16"), parseCidr("10.244.3.0/24")));
  assert.ok(!overlaps(parseCidr("10.244.2.0/24"), parseCidr("10.244.3.0/24")));
  assert.equal(firstAddress(parseCidr("10.244.3.0/24")), "10.244.3.0");
  assert.equal(firstAddress(parseCidr("fd00:244:3::/64")), "fd00:244:3::");
});
