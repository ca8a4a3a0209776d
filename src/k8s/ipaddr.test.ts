import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalAddr, cidrMinus, formatAddr, isStrictSubset, parseCidr } from "./ipaddr.js";

test("canonical addresses", () => {
  assert.equal(canonicalAddr("fd00:0:0::1"), "fd00::1");
  assert.equal(canonicalAddr("FD00:10:244:1:0:0:0:0"), "fd00:10:244:1::");
  assert.equal(canonicalAddr("::ffff:10.0.0.1"), "::ffff:a00:1");
  assert.equal(canonicalAddr("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
  assert.equal(canonicalAddr("10.1.2.3"), "10.1.2.3");
  assert.equal(canonicalAddr("10.1.2"), null);
  assert.equal(canonicalAddr("::"), "::");
});

test("CIDR parsing: host bits cleared, bad prefixes rejected", () => {
  const c = parseCidr("10.1.2.3/16");
  assert.ok(c);
  assert.equal(formatAddr(c.family, c.network), "10.1.0.0");
  assert.equal(parseCidr("10.0.0.0/33"), null);
  assert.equal(parseCidr("fd00::/129"), null);
  assert.equal(parseCidr("10.0.0.0"), null);
  assert.ok(parseCidr("0.0.0.0/0"));
  assert.ok(parseCidr("::/0"));
});

test("strict subset and cidr minus except", () => {
  const outer = parseCidr("10.0.0.0/8")!;
  assert.ok(isStrictSubset(outer, parseCidr("10.1.0.0/16")!));
  assert.ok(!isStrictSubset(outer, parseCidr("10.0.0.0/8")!));
  assert.ok(!isStrictSubset(outer, parseCidr("11.0.0.0/16")!));
  const r = cidrMinus(parseCidr("10.0.0.0/24")!, [parseCidr("10.0.0.128/25")!, parseCidr("10.0.0.0/30")!]);
  assert.deepEqual(r.map((x) => `${formatAddr(4, x.first)}-${formatAddr(4, x.last)}`), ["10.0.0.4-10.0.0.127"]);
  const all6 = cidrMinus(parseCidr("::/0")!, [parseCidr("fd00::/8")!]);
  assert.deepEqual(all6.map((x) => `${formatAddr(6, x.first)}-${formatAddr(6, x.last)}`), ["::-fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]);
});
