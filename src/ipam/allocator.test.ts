import { test } from "node:test";
import assert from "node:assert/strict";
import { cidrHas } from "../net/cidr.js";
import { canonicalIp, formatIp, ipOrThrow } from "../net/ip.js";
import { parsePool } from "./pool.js";
import { nextFree } from "./allocator.js";

const v = (s: string) => ipOrThrow(s).value;
const f4 = (x: bigint | null) => (x === null ? null : formatIp(4, x));

test("IPv4: skips the network address and the broadcast address", () => {
  const pool = parsePool("10.1.0.0/30");
  const used = new Set<bigint>();
  const got: (string | null)[] = [];
  for (let i = 0; i < 3; i++) {
    const a = nextFree(pool, null, (x) => used.has(x));
    got.push(f4(a));
    if (a !== null) used.add(a);
  }
  assert.deepEqual(got, ["10.1.0.1", "10.1.0.2", null]);
});

test("continues after the last allocation and wraps around, so a released address is not reused at once", () => {
  const pool = parsePool("10.1.0.0/29"); // usable .1 - .6
  const used = new Set([v("10.1.0.1"), v("10.1.0.2")]);
  // .3 was allocated last and released; the next one is .4, not .3.
  assert.equal(f4(nextFree(pool, v("10.1.0.3"), (x) => used.has(x))), "10.1.0.4");
  // after the top usable address comes the bottom one again, skipping used ones
  assert.equal(f4(nextFree(pool, v("10.1.0.6"), (x) => used.has(x))), "10.1.0.3");
  // a cursor outside the pool starts at the beginning
  assert.equal(f4(nextFree(pool, v("192.168.0.1"), (x) => used.has(x))), "10.1.0.3");
});

test("a full pool gives null", () => {
  const pool = parsePool("10.1.0.0/29");
  assert.equal(
    nextFree(pool, v("10.1.0.4"), () => true),
    null,
  );
});

test("IPv6: canonical forms and allocation in a /64", () => {
  const pool = parsePool("FD00:0:0:1::/64");
  assert.equal(pool.cidr, "fd00:0:0:1::/64");
  const a = nextFree(pool, null, () => false);
  assert.equal(formatIp(6, a!), "fd00:0:0:1::1");
  assert.equal(canonicalIp("fd00:0000:0:0:1:0:0:0"), "fd00::1:0:0:0");
  assert.equal(canonicalIp("::ffff:10.0.0.1"), "::ffff:a00:1");
  assert.equal(canonicalIp("2001:db8::"), "2001:db8::");
  assert.ok(cidrHas(pool, ipOrThrow("fd00:0:0:1:ffff::5")));
  assert.ok(!cidrHas(pool, ipOrThrow("fd00:0:0:2::5")));
});

test("rejects CIDRs with host bits or bad prefixes", () => {
  assert.throws(() => parsePool("10.1.0.1/24"), /host bits set; the network is 10.1.0.0\/24/);
  assert.throws(() => parsePool("10.1.0.0/33"), /too long/);
  assert.throws(() => parsePool("nonsense"), /not a CIDR/);
});
