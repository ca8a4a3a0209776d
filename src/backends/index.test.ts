import assert from "node:assert/strict";
import { test } from "node:test";
import { BACKEND_NAMES, createBackend } from "./index.js";
import { vtepMac } from "./vxlan/index.js";

test("the factory makes each backend by name and refuses unknown names with the list", () => {
  for (const n of BACKEND_NAMES) assert.equal(createBackend(n).name, n);
  assert.throws(() => createBackend("ipip"), /unknown backend "ipip": choose one of vxlan, host-gw, vxlan-direct/);
  assert.equal(createBackend("vxlan").overhead(4), 50);
  assert.equal(createBackend("vxlan-direct").overhead(6), 70);
  assert.equal(createBackend("host-gw").overhead(4), 0);
});

test("VTEP MACs are stable per node, unicast and locally administered", () => {
  const m = vtepMac("node-a", 1);
  assert.equal(m, vtepMac("node-a", 1));
  assert.notEqual(m, vtepMac("node-b", 1));
  const first = parseInt(m.slice(0, 2), 16);
  assert.equal(first & 1, 0);
  assert.equal(first & 2, 2);
});
