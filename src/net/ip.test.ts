import assert from "node:assert/strict";
import { test } from "node:test";
import { formatIpValue } from "./ip.js";

const v6 = (groups: number[]) => groups.reduce((a, g) => (a << 16n) | BigInt(g), 0n);

test("addresses are written as iproute2 and Kubernetes print them (RFC 5952)", () => {
  assert.equal(formatIpValue(4, 0x0af40102n), "10.244.1.2");
  assert.equal(formatIpValue(4, 0n), "0.0.0.0");
  assert.equal(formatIpValue(6, 0n), "::");
  assert.equal(formatIpValue(6, 1n), "::1");
  assert.equal(formatIpValue(6, v6([0xfd00, 0, 0, 0, 0, 0, 0, 1])), "fd00::1");
  // A single zero group is not compressed; the longest run wins; the first run wins a tie.
  assert.equal(formatIpValue(6, v6([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1])), "2001:db8:0:1:1:1:1:1");
  assert.equal(formatIpValue(6, v6([0x2001, 0, 0, 1, 0, 0, 0, 1])), "2001:0:0:1::1");
  assert.equal(formatIpValue(6, v6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1])), "2001:db8::1:0:0:1");
  assert.equal(formatIpValue(6, v6([0xfe80, 0, 0, 0, 0, 0, 0, 0])), "fe80::");
});
