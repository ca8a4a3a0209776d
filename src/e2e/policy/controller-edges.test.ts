// Edge cases of the policy controller on a real kernel: bursts coalesce, pods added before
// start() are covered by the first commit, a table changed behind the controller's back is
// repaired, removals take the pod's entries out, and a failed commit fails the pod's ADD.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { PolicyApplyError, PolicyController } from "../../policy-agent/controller.js";
import { createNetns, removeAllNetns } from "../../testlib/netns.js";
import { localStorePath, openLocalStore } from "../../store/local/index.js";
import { openStore } from "../../store/index.js";
import { Writable } from "node:stream";
import { pino } from "pino";
import { startPolicyEnforcement } from "../../policy-agent/run.js";
import { PolicyFixture, localPod, until, type PodDef } from "./fixture.js";

const root = process.getuid?.() === 0;
const skip = !root && "needs root to create network namespaces";

let f: PolicyFixture | undefined;
const ctrls: PolicyController[] = [];
after(async () => {
  for (const c of ctrls) await c.stop().catch(() => undefined);
  await f?.cleanup();
  await removeAllNetns();
});

const pod = (i: number): PodDef => ({
  ns: "y",
  name: `p${i}`,
  v4: `10.244.9.${i + 1}`,
  v6: `fd00:10:244:9::${i + 1}`,
  ifname: `wfburst${i}`,
  labels: { app: "burst" },
});

async function setElements(name: string): Promise<string> {
  return f!.node.exec(["nft", "list", name.startsWith("v") ? "map" : "set", "inet", "weft", name]);
}

test(
  "a burst of podAdded calls is coalesced into few commits, and every call resolves with its pod in force",
  { skip },
  async () => {
    f = await PolicyFixture.create();
    await f.namespace("y", { team: "y" });
    await f.apply({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "burst", namespace: "y" },
      spec: { podSelector: { matchLabels: { app: "burst" } }, policyTypes: ["Ingress"] },
    });
    const c = f.controller();
    ctrls.push(c);
    await f.podObject(pod(0));
    // Added before start(): resolves with the first commit.
    const early = c.podAdded(localPod(pod(0)));
    await c.start();
    await early;
    assert.match(await setElements("vi_4"), /10\.244\.9\.1 : jump gi_/);

    // The pods' objects are written through a second store handle (as `weft apply` in another
    // process would), so the controller's watch learns of them only at its next poll; podAdded
    // reads the pod from the store itself and must not miss its labels.
    const writer = openLocalStore({ path: localStorePath(f.stateDir) });
    try {
      for (let i = 1; i <= 20; i++) {
        const p = pod(i);
        await writer.objects.apply({
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: p.name, namespace: p.ns, labels: p.labels },
          spec: { nodeName: "node1", containers: [{ name: "c" }] },
        });
      }
    } finally {
      await writer.close();
    }
    const before = c.stats.fullApplies + c.stats.elementApplies;
    const fullBefore = c.stats.fullApplies;
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.podAdded(localPod(pod(i + 1)))));
    const commits = c.stats.fullApplies + c.stats.elementApplies - before;
    assert.ok(commits >= 1 && commits <= 5, `20 concurrent adds took ${commits} commits`);
    assert.equal(c.stats.fullApplies, fullBefore, "pods joining an existing group change set elements, not rules");
    assert.equal(c.stats.immediateAdds, 0, "every pod is isolated: none of the calls resolved without a commit");
    // Every one of them is isolated for ingress (the policy selects app=burst): in the verdict map.
    const vi = await setElements("vi_4");
    for (let i = 1; i <= 20; i++)
      assert.ok(vi.includes(`10.244.9.${i + 1} : jump gi_`), `pod p${i} jumps to its ingress group`);

    // One more, its object written a moment before its ADD: no chance for the watch to see it first.
    const w2 = openLocalStore({ path: localStorePath(f.stateDir) });
    const p21 = pod(21);
    try {
      await w2.objects.apply({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: p21.name, namespace: p21.ns, labels: p21.labels },
        spec: { nodeName: "node1", containers: [{ name: "c" }] },
      });
    } finally {
      await w2.close();
    }
    await c.podAdded(localPod(p21));
    assert.ok(
      (await setElements("vi_4")).includes("10.244.9.22 : jump gi_"),
      "the pod's labels were read at its ADD: isolated at once",
    );
  },
);

test(
  "podRemoved takes the pod's entries out; a stale DEL of another interface leaves the pod alone",
  { skip },
  async () => {
    const c = ctrls[0];
    await c.podRemoved({ namespace: "y", name: "p1", ifname: "wfother" });
    assert.match(await setElements("vi_4"), /10\.244\.9\.2 : jump gi_/, "a DEL for another interface keeps the pod");
    await c.podRemoved({ namespace: "y", name: "p1" });
    assert.doesNotMatch(await setElements("vi_4"), /10\.244\.9\.2 :/);
  },
);

test(
  "a pod no policy isolates: podAdded resolves without a commit and its peer-set entry follows; an isolated pod has its rules when podAdded resolves",
  { skip },
  async () => {
    const c = ctrls[0];
    const fx = f!;
    // y's burst pods admit ingress from app=free pods: a free pod's address belongs in a peer set.
    await fx.apply({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "from-free", namespace: "y" },
      spec: {
        podSelector: { matchLabels: { app: "burst" } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: "free" } } }] }],
      },
    });
    await until(
      () => c.model()?.policies.some((p) => p.ref.name === "from-free") ?? false,
      10_000,
      "from-free is in force",
    );
    const free: PodDef = {
      ns: "y",
      name: "free",
      v4: "10.244.9.200",
      v6: "fd00:10:244:9::200",
      ifname: "wffree",
      labels: { app: "free" },
    };
    // No status yet (as at a real ADD): its address is known only from the ADD itself.
    await fx.apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: free.name, namespace: free.ns, labels: free.labels },
      spec: { nodeName: "node1", containers: [{ name: "c" }] },
    });
    await c.synced();
    const commits = () => c.stats.fullApplies + c.stats.elementApplies;
    const table = () => fx.node.exec(["nft", "list", "table", "inet", "weft"]);
    const before = commits();
    const immediate = c.stats.immediateAdds;
    await c.podAdded(localPod(free));
    assert.equal(commits(), before, "podAdded of a pod no policy selects resolved without a transaction");
    assert.equal(c.stats.immediateAdds, immediate + 1);
    assert.ok(
      !(await table()).includes("10.244.9.200"),
      "when podAdded resolved, nothing about the pod was in the kernel yet",
    );
    // Promptly, in the background: it joins from-free's peer set (an element update).
    await until(
      async () => (await table()).includes("10.244.9.200"),
      2000,
      "the free pod's address joins the peer set in the background",
    );
    assert.ok(commits() > before);
    assert.doesNotMatch(await setElements("vi_4"), /10\.244\.9\.200 :/, "the free pod is not isolated");

    // Its DEL releases the address before the removal is committed; a new pod (no policy, not a
    // peer) given the same address at once must not resolve while the old pod's peer-set entry stands.
    const reuse: PodDef = { ...free, name: "reuse", ifname: "wfreuse", labels: { app: "other" } };
    await fx.apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: reuse.name, namespace: reuse.ns, labels: reuse.labels },
      spec: { nodeName: "node1", containers: [{ name: "c" }] },
    });
    await c.synced();
    const removed = c.podRemoved({ namespace: free.ns, name: free.name });
    await c.podAdded(localPod(reuse));
    assert.ok(
      !(await table()).includes("10.244.9.200"),
      "the reused address is in no peer set when the new pod's podAdded resolves",
    );
    await removed;

    // A selected pod: a commit is made for it and its rules are in when podAdded resolves.
    const sel = pod(80);
    await fx.apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: sel.name, namespace: sel.ns, labels: sel.labels },
      spec: { nodeName: "node1", containers: [{ name: "c" }] },
    });
    await c.synced();
    const b2 = commits();
    const full = c.stats.fullApplies;
    await c.podAdded(localPod(sel));
    assert.ok(commits() > b2, "podAdded of an isolated pod waited for a commit");
    assert.equal(c.stats.fullApplies, full, "joining an existing group is an element update");
    assert.equal(c.stats.immediateAdds, immediate + 1);
    assert.match(
      await setElements("vi_4"),
      /10\.244\.9\.81 : jump gi_/,
      "its ingress isolation is in the kernel when podAdded resolves",
    );
  },
);

test(
  "a container without Kubernetes pod args (namespace _cni, as podman's) is added without a store read or a commit",
  { skip },
  async () => {
    const c = ctrls[0];
    const commits = () => c.stats.fullApplies + c.stats.elementApplies;
    const before = commits();
    const immediate = c.stats.immediateAdds;
    await c.podAdded({ namespace: "_cni", name: "podman-ctr-1", ifname: "wfpodman1", ips: ["10.244.9.230"] });
    assert.equal(commits(), before, "resolved without a transaction");
    assert.equal(c.stats.immediateAdds, immediate + 1, "took the fast path (no failed store read forcing a commit)");
    await c.podRemoved({ namespace: "_cni", name: "podman-ctr-1" });
  },
);

test("a table changed behind the controller's back is replaced whole on the next change", { skip }, async () => {
  const c = ctrls[0];
  await f!.node.exec(["nft", "delete", "table", "inet", "weft"]);
  // The next change must reach the kernel: an isolated pod (its map element cannot be added).
  await f!.podObject(pod(30));
  await c.synced();
  const fullBefore = c.stats.fullApplies;
  await c.podAdded(localPod(pod(30)));
  assert.equal(c.stats.fullApplies, fullBefore + 1, "the failed element update fell back to a full replacement");
  assert.match(await setElements("vi_4"), /10\.244\.9\.31 : jump gi_/);
  assert.match(await setElements("vi_4"), /10\.244\.9\.3 : jump gi_/, "everything else is back too");
});

test(
  "a commit that cannot be made rejects podAdded with PolicyApplyError (the ADD fails, the runtime retries)",
  { skip },
  async () => {
    const ns = await createNetns("pg");
    const c = new PolicyController({
      node: "node1",
      netns: ns.path,
      objects: f!.store.objects,
      localPods: () => [],
      debounceMs: 5,
    });
    ctrls.push(c);
    await c.start();
    await f!.podObject(pod(40)); // app=burst: isolated, so its ADD needs a commit
    await ns.remove(); // the namespace is gone: nft cannot run there any more
    await assert.rejects(
      c.podAdded(localPod(pod(40))),
      (e: unknown) => e instanceof PolicyApplyError && /could not be applied/.test(e.message),
    );
    assert.ok(c.stats.failures >= 1);
    await c.stop();
    await assert.rejects(c.podAdded(localPod(pod(41))), /stopped/);
  },
);

test("start() on a namespace with no table yet creates it; stop() leaves it in force", { skip }, async () => {
  const ns = await createNetns("ph");
  const c = new PolicyController({
    node: "node1",
    netns: ns.path,
    objects: f!.store.objects,
    localPods: () => [localPod(pod(50))],
    debounceMs: 5,
  });
  await c.start();
  await c.stop();
  const t = await ns.exec(["nft", "list", "table", "inet", "weft"]);
  assert.match(t, /fib saddr \. iif oif missing counter name "spoofed" drop/, "the anti-spoofing rule is in");
  assert.ok(
    c.model()?.localPods.some((p) => p.name === "p50"),
    "the committed model has the provider's pod",
  );
  await until(
    async () => (await ns.status(["nft", "list", "table", "inet", "weft"])).code === 0,
    1000,
    "table stays after stop()",
  );
  await ns.remove();
});

test(
  "with the store unreachable, start() commits nothing (the old rules stay) until it can see everything",
  { skip },
  async () => {
    const ns = await createNetns("pi");
    const first = new PolicyController({
      node: "node1",
      netns: ns.path,
      objects: f!.store.objects,
      localPods: () => [localPod(pod(60))],
      debounceMs: 5,
    });
    await first.start();
    await first.stop();
    const tableBefore = await ns.exec(["nft", "list", "table", "inet", "weft"]);
    // Nothing listens on 127.0.0.1:9: the etcd client keeps retrying, the watches never get their list.
    const down = openStore({ kind: "etcd", endpoints: ["http://127.0.0.1:9"], requestTimeoutMs: 200 });
    const c = new PolicyController({
      node: "node1",
      netns: ns.path,
      objects: down.objects,
      localPods: () => [],
      debounceMs: 5,
    });
    const starting = c.start();
    let settled = false;
    starting.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(settled, false, "start() waits for a complete view of the objects");
    assert.equal(
      await ns.exec(["nft", "list", "table", "inet", "weft"]),
      tableBefore,
      "the old table is untouched meanwhile",
    );
    await c.stop();
    await assert.rejects(starting, /stopped before the rules were applied/);
    assert.equal(
      await ns.exec(["nft", "list", "table", "inet", "weft"]),
      tableBefore,
      "stopping a start that never saw the objects commits nothing",
    );
    await down.close();
    await ns.remove();
  },
);

test(
  "startPolicyEnforcement: controller, loopback /metrics and deny log in one call; stop() leaves the rules",
  { skip },
  async () => {
    const ns = await createNetns("pj");
    const lines: string[] = [];
    const log = pino(
      new Writable({
        write(c: Buffer, _e, cb) {
          lines.push(c.toString());
          cb();
        },
      }),
    );
    const pe = await startPolicyEnforcement({
      node: "node1",
      netns: ns.path,
      objects: f!.store.objects,
      localPods: () => [localPod(pod(70))],
      log,
      metricsPort: 0,
    });
    try {
      assert.ok(pe.metricsPort, "serving metrics");
      const text = await (await fetch(`http://127.0.0.1:${pe.metricsPort}/metrics`)).text();
      assert.match(text, /^weft_policy_applies\{kind="full"\} 1$/m);
      assert.match(text, /^weft_policy_apply_failures 0$/m);
      assert.ok(pe.controller.model()?.localPods.some((p) => p.name === "p70"));
    } finally {
      await pe.stop();
    }
    assert.match(
      await ns.exec(["nft", "list", "table", "inet", "weft"]),
      /fib saddr \. iif oif missing counter name "spoofed" drop/,
      "rules stay after stop()",
    );
    assert.ok(!lines.some((l) => /will not be logged/.test(l)), `the deny log started: ${lines.join("")}`);
    await ns.remove();
  },
);
