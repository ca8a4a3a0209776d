// The controller and multi-interface pods on a real kernel: a pod's second weft interface is
// added by name (same namespace/name), so podAdded() must not take the no-policy fast path; the
// sibling-source elements are in the kernel once it resolves, and go again with the interface.
// (That the elements let the cross-interface source through and nothing else is shown by
// policy/nft.kernel.test.ts; pairing by shared network namespace by agent/agent.test.ts.)
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PolicyFixture, localPod, type PodDef } from "../e2e-policy/fixture.js";
import type { PolicyController } from "./controller.js";

const root = process.getuid?.() === 0;
const skip = !root && "needs root to create network namespaces";

const MULTI: PodDef = { ns: "m", name: "multi", v4: "10.244.8.1", v6: "fd00:10:244:8::1", ifname: "wfmmulti", labels: {} };
const SOLO: PodDef = { ns: "m", name: "solo", v4: "10.244.8.2", v6: "fd00:10:244:8::2", ifname: "wfmsolo", labels: {} };
const SECOND = { namespace: "m", name: "multi", ifname: "wfmmulti1", ips: ["10.244.8.11/32", "fd00:10:244:8::11/128"] };

let f: PolicyFixture;
let ctrl: PolicyController | undefined;
before(async () => {
  if (root) f = await PolicyFixture.create();
});
after(async () => {
  await ctrl?.stop().catch(() => undefined);
  await f?.cleanup();
});

async function siblings(fam: 4 | 6): Promise<string> {
  return f.node.exec(["nft", "list", "set", "inet", "weft", `sib_${fam}`]);
}

test("a pod's second interface waits for its commit; its sibling sources are in the kernel when podAdded resolves", { skip }, async () => {
  await f.namespace("m", {});
  for (const p of [MULTI, SOLO]) {
    await f.podObject(p);
    await f.wire(p);
  }
  ctrl = f.controller();
  await ctrl.start();
  assert.doesNotMatch(await siblings(4), /elements/, "single-interface pods: no elements");

  const immediate = ctrl.stats.immediateAdds;
  await ctrl.podAdded(SECOND);
  assert.equal(ctrl.stats.immediateAdds, immediate, "the second interface did not take the fast path");
  const v4 = await siblings(4);
  assert.match(v4, /"wfmmulti" \. 10\.244\.8\.11/, "eth0's veth may send eth1's IPv4 address");
  assert.match(v4, /"wfmmulti1" \. 10\.244\.8\.1\b/, "eth1's veth may send eth0's IPv4 address");
  assert.match(await siblings(6), /"wfmmulti" \. fd00:10:244:8::11/);
  assert.doesNotMatch(v4, /wfmsolo/, "the other pod's veth gets nothing");

  // A single-interface pod still takes the fast path.
  const third: PodDef = { ns: "m", name: "late", v4: "10.244.8.3", v6: "fd00:10:244:8::3", ifname: "wfmlate", labels: {} };
  await f.podObject(third);
  await ctrl.podAdded(localPod(third));
  assert.equal(ctrl.stats.immediateAdds, immediate + 1, "a pod's only interface resolves at once (no policy isolates it)");

  // Another identity (e.g. no K8S_POD_* args) in the same network namespace, as the agent names it.
  const fourth: PodDef = { ns: "m", name: "four", v4: "10.244.8.4", v6: "fd00:10:244:8::4", ifname: "wfmfour", labels: {} };
  await f.podObject(fourth);
  await ctrl.podAdded({ ...localPod(fourth), netns: "/run/netns/four" });
  assert.equal(ctrl.stats.immediateAdds, immediate + 2);
  await ctrl.podAdded({ namespace: "_cni", name: "c123", ifname: "wfmfour1", ips: ["10.244.8.14"], netns: "/run/netns/four" });
  assert.equal(ctrl.stats.immediateAdds, immediate + 2, "same netns, other identity: no fast path");
  assert.match(await siblings(4), /"wfmfour" \. 10\.244\.8\.14/);
  await ctrl.podRemoved({ namespace: "_cni", name: "c123" });
  await ctrl.podRemoved({ namespace: "m", name: "four" });

  await ctrl.podRemoved({ namespace: "m", name: "multi", ifname: SECOND.ifname });
  assert.doesNotMatch(await siblings(4), /elements/, "removing the second interface removes the elements");
  assert.doesNotMatch(await siblings(6), /elements/);
});
