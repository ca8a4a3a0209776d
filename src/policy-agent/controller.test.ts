// The controller and multi-interface pods on a real kernel: a pod's second weft interface is
// added by name (same namespace/name), so podAdded() must not take the no-policy fast path; the
// sibling-source elements are in the kernel once it resolves, and go again with the interface.
// (That the elements let the cross-interface source through and nothing else is shown by
// policy/nft.kernel.test.ts; pairing by shared network namespace by agent/agent.test.ts.)
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { PolicyFixture, localPod, type PodDef } from "../e2e/policy/fixture.js";
import { PolicyController } from "./controller.js";
import { compile, renderRuleset } from "../policy/index.js";
import { createNetns } from "../testlib/netns.js";
import { validateNamespace, validateNetworkPolicy, validatePod } from "../k8s/index.js";

const root = process.getuid?.() === 0;
const skip = !root && "needs root to create network namespaces";

const MULTI: PodDef = {
  ns: "m",
  name: "multi",
  v4: "10.244.8.1",
  v6: "fd00:10:244:8::1",
  ifname: "wfmmulti",
  labels: {},
};
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

test(
  "a pod's second interface waits for its commit; its sibling sources are in the kernel when podAdded resolves",
  { skip },
  async () => {
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
    const third: PodDef = {
      ns: "m",
      name: "late",
      v4: "10.244.8.3",
      v6: "fd00:10:244:8::3",
      ifname: "wfmlate",
      labels: {},
    };
    await f.podObject(third);
    await ctrl.podAdded(localPod(third));
    assert.equal(
      ctrl.stats.immediateAdds,
      immediate + 1,
      "a pod's only interface resolves at once (no policy isolates it)",
    );

    // Another identity (e.g. no K8S_POD_* args) in the same network namespace, as the agent names it.
    const fourth: PodDef = {
      ns: "m",
      name: "four",
      v4: "10.244.8.4",
      v6: "fd00:10:244:8::4",
      ifname: "wfmfour",
      labels: {},
    };
    await f.podObject(fourth);
    await ctrl.podAdded({ ...localPod(fourth), netns: "/run/netns/four" });
    assert.equal(ctrl.stats.immediateAdds, immediate + 2);
    await ctrl.podAdded({
      namespace: "_cni",
      name: "c123",
      ifname: "wfmfour1",
      ips: ["10.244.8.14"],
      netns: "/run/netns/four",
    });
    assert.equal(ctrl.stats.immediateAdds, immediate + 2, "same netns, other identity: no fast path");
    assert.match(await siblings(4), /"wfmfour" \. 10\.244\.8\.14/);
    await ctrl.podRemoved({ namespace: "_cni", name: "c123" });
    await ctrl.podRemoved({ namespace: "m", name: "four" });

    await ctrl.podRemoved({ namespace: "m", name: "multi", ifname: SECOND.ifname });
    assert.doesNotMatch(await siblings(4), /elements/, "removing the second interface removes the elements");
    assert.doesNotMatch(await siblings(6), /elements/);
  },
);

// ---- pod churn takes the incremental path, and the kernel ends where a full compile would ------

/** The table's set and map elements, as sorted JSON texts per set (hash sets list in any order). */
async function elements(ns: { exec(argv: string[]): Promise<string> }): Promise<Record<string, string[]>> {
  const doc = JSON.parse(await ns.exec(["nft", "-j", "list", "table", "inet", "weft"])) as {
    nftables: Array<{ set?: { name: string; elem?: unknown[] }; map?: { name: string; elem?: unknown[] } }>;
  };
  const out: Record<string, string[]> = {};
  for (const item of doc.nftables) {
    const s = item.set ?? item.map;
    if (s) out[s.name] = (s.elem ?? []).map((e) => JSON.stringify(e)).sort();
  }
  return out;
}

test(
  "pod churn is applied incrementally and leaves the kernel's elements equal to a full compile's",
  { skip },
  async () => {
    await f.namespace("ca", { team: "x" });
    await f.namespace("cb", { team: "y" });
    const np = (name: string, spec: object) =>
      f.apply({
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: { name, namespace: "ca" },
        spec,
      } as never);
    await np("web", {
      podSelector: { matchLabels: { app: "web" } },
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [{ namespaceSelector: { matchLabels: { team: "y" } }, podSelector: { matchLabels: { role: "cli" } } }],
          ports: [{ port: "tcp-main" }],
        },
      ],
    });
    await np("db", {
      podSelector: { matchLabels: { app: "db" } },
      policyTypes: ["Ingress", "Egress"],
      ingress: [{ from: [{ podSelector: { matchLabels: { app: "web" } } }] }],
      egress: [{ to: [{ podSelector: {} }] }],
    });
    const def = (ns: string, i: number, labels: Record<string, string>): PodDef => ({
      ns,
      name: `c${i}`,
      v4: `10.244.20.${i}`,
      v6: `fd00:10:244:20::${i}`,
      ifname: `wfc${i}`,
      labels,
    });
    const local = [def("ca", 1, { app: "web" }), def("ca", 2, { app: "db" })];
    for (const p of local) await f.podObject(p);
    const c = new PolicyController({
      node: "node1",
      netns: f.node.path,
      objects: f.store.objects,
      localPods: () => local.map(localPod),
      debounceMs: 5,
    });
    const ref = await createNetns("pr");
    try {
      await c.start();
      const steps: Array<[string, () => Promise<unknown>]> = [
        ["a client pod elsewhere", () => f.podObject(def("cb", 10, { role: "cli" }))],
        ["a pod in another team", () => f.podObject(def("ca", 11, { role: "cli" }))],
        ["the client relabelled", () => f.podObject(def("cb", 10, { role: "other" }))],
        [
          "a web replica on this node",
          async () => {
            const p = def("ca", 3, { app: "web" });
            await f.podObject(p);
            await c.podAdded(localPod(p));
          },
        ],
        ["a client removed", () => f.store.objects.delete({ kind: "Pod", namespace: "cb", name: "c10" })],
        [
          "a burst of pods (coalesced into one commit)",
          () =>
            Promise.all([12, 13, 14].map((i) => f.podObject(def(i % 2 ? "cb" : "ca", i, { role: "cli", app: "web" })))),
        ],
        ["a db replica removed from this node", () => c.podRemoved({ namespace: "ca", name: "c2" })],
      ];
      /** A full compile of what the store holds now, loaded into the reference namespace. */
      const reference = async (): Promise<Record<string, string[]>> => {
        const [nss, pods, nps] = await Promise.all(
          ["Namespace", "Pod", "NetworkPolicy"].map((k) => f.store.objects.list(k)),
        );
        const model = compile({
          namespaces: nss.map((o) => validateNamespace(o)).flatMap((v) => (v.ok ? [v.value] : [])),
          pods: pods.map((o) => validatePod(o)).flatMap((v) => (v.ok ? [v.value] : [])),
          policies: nps.map((o) => validateNetworkPolicy(o)).flatMap((v) => (v.ok ? [v.value] : [])),
          node: "node1",
          local: c.localPods(),
        });
        await ref.exec(["nft", "-f", "-"], { input: renderRuleset(model) });
        return elements(ref);
      };
      const inc0 = c.stats.incrementalApplies;
      for (const [what, step] of steps) {
        await step();
        // synced() covers only the changes the controller has seen: a store write whose watch event
        // is still in flight is not among them. So wait for the condition itself (the kernel equal
        // to a full compile of the store), with a deadline, instead of for the event order.
        const deadline = Date.now() + 20_000;
        for (;;) {
          await c.synced();
          const [got, want] = [await elements(f.node), await reference()];
          if (isDeepStrictEqual(got, want)) break;
          if (Date.now() > deadline)
            assert.deepEqual(got, want, `after "${what}" the kernel holds a full compile's elements (waited 20 s)`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      assert.ok(
        c.stats.incrementalApplies - inc0 >= 5,
        `pod churn went the incremental way (${c.stats.incrementalApplies - inc0} of ${steps.length} steps)`,
      );
    } finally {
      await c.stop();
      await ref.remove();
    }
  },
);
