// The store's thin wrapper over net/cidr.ts: same rules, the store's error type (InvalidError,
// which the CLI and the API show as a user error), surrounding blanks ignored.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatCidr } from "../net/cidr.js";
import { InvalidError } from "./errors.js";
import { normalizeSettings, parseCidr } from "./validate.js";

test("store CIDRs: strict by default, InvalidError naming the network meant", () => {
  assert.equal(formatCidr(parseCidr(" FD00:10:244::/48 ")), "fd00:10:244::/48");
  assert.throws(
    () => parseCidr("10.244.1.0/16"),
    (e: unknown) => e instanceof InvalidError && /did you mean 10\.244\.0\.0\/16/.test(e.message),
  );
  for (const bad of ["10.0.0.0/33", "10.0.0.0", "banana/8", "fe80::%eth0/64"])
    assert.throws(() => parseCidr(bad), InvalidError, bad);
  assert.equal(formatCidr(parseCidr("10.1.2.3/16", false)), "10.1.0.0/16");
});

test("cluster settings keep the canonical CIDR text", () => {
  const s = normalizeSettings({ clusterCIDRs: ["10.244.0.0/16", "FD00:10:244:0::/48"], backend: "vxlan" });
  assert.deepEqual(s.clusterCIDRs, ["10.244.0.0/16", "fd00:10:244::/48"]);
  assert.throws(
    () => normalizeSettings({ clusterCIDRs: ["10.244.0.0/16"], backend: "vxlan", nodeSubnetPrefix: { v4: 8, v6: 64 } }),
    /node subnet size \/8 does not fit IPv4 cluster CIDR 10\.244\.0\.0\/16/,
  );
});
