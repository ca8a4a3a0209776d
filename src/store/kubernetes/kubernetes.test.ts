// The shared store cases against a real kube-apiserver (v1.20.2 over a real etcd, started once for
// this file), plus what a user checks with kubectl: the nodes weft registered, with their podCIDRs
// and annotations, node Leases, and pod status written through the status subresource.
import { after, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { wipe } from "./testing.js";
import { storeCases, trackingFixture, waitFor, collector } from "../cases.js";
import { KubeClient, openKubernetesStore } from "./index.js";
import { startKubeApiserver, kubeApiserverBinary, type KubeApiserver } from "../../lab/apiserver-process.js";
import { microTime, type Json } from "./client.js";
import { runInformer } from "./informer.js";
import { kubectlBinary, kubectlSkipReason } from "../../testlib/kubectl.js";
import { nodeLeasePath } from "./layout.js";
import { ConflictError, UnavailableError, type ClusterStore, type LeaseState, type NodeInfo } from "../types.js";

const BIN = kubeApiserverBinary();
const skip = existsSync(BIN)
  ? false
  : `${BIN} is missing: build it with \`bash scripts/kube-apiserver.sh\` (about 11 minutes; CI runs it)`;

let apiserver: Promise<KubeApiserver> | undefined;
const api = (): Promise<KubeApiserver> => (apiserver ??= startKubeApiserver());

after(async () => {
  if (apiserver) await (await apiserver).stop();
});

if (skip) {
  describe("ClusterStore cases: kubernetes (kube-apiserver 1.20.2 over etcd)", { skip }, () => undefined);
} else {
  let previous: { closeAll(): Promise<void> } | undefined;
  storeCases({
    name: "kubernetes (kube-apiserver 1.20.2 over etcd)",
    fresh: async () => {
      const a = await api();
      // The previous case's agents stop renewing before their Leases go (else they re-register).
      await previous?.closeAll();
      await wipe(a.kubeconfig);
      const f = trackingFixture(() => openKubernetesStore({ kubeconfig: a.kubeconfig, requestTimeoutMs: 5000 }));
      previous = f;
      return f;
    },
    teardown: async () => {
      await previous?.closeAll();
    },
  });
}

function kubectl(kubeconfig: string, ...args: string[]): string {
  const r = spawnSync(kubectlBinary(), ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, `kubectl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

describe("kubernetes store: what kubectl shows", { skip: skip || (kubectlSkipReason() ?? false) }, () => {
  const clients: ClusterStore[] = [];
  const open = async (): Promise<ClusterStore> => {
    const s = openKubernetesStore({ kubeconfig: (await api()).kubeconfig, requestTimeoutMs: 5000 });
    clients.push(s);
    return s;
  };
  // Each test's stores close before the next one starts: a previous test's live node lease,
  // finding its objects wiped, would re-register into the next test's cluster and race it for
  // subnets (the cause of "a dead node leaves kubectl's list" timing out on a busy machine).
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  };
  beforeEach(closeAll);
  after(closeAll);

  test(
    "kubectl get nodes shows weft's nodes with their podCIDRs, addresses and backend data",
    { timeout: 90_000 },
    async () => {
      const { kubeconfig } = await api();
      await wipe(kubeconfig);
      const a = await open();
      await a.initCluster({ clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"], backend: "vxlan" });
      const l1 = await a.registerNode(
        { name: "kc-1", addresses: ["192.0.2.31", "2001:db8::31"], backendData: { vtepMAC: "aa:bb:cc:00:00:31" } },
        { ttlSeconds: 3 },
      );
      const l2 = await (
        await open()
      ).registerNode({ name: "kc-2", addresses: ["192.0.2.32"], backendData: { vtepMAC: "aa:bb:cc:00:00:32" } });

      const list = JSON.parse(kubectl(kubeconfig, "get", "nodes", "-o", "json")) as { items: Json[] };
      const byName = new Map(list.items.map((n) => [(n.metadata as { name: string }).name, n]));
      assert.deepEqual([...byName.keys()].sort(), ["kc-1", "kc-2"]);
      for (const lease of [l1, l2]) {
        const n = byName.get(lease.node.name)!;
        const spec = n.spec as { podCIDR: string; podCIDRs: string[] };
        assert.deepEqual(spec.podCIDRs, lease.node.podCIDRs);
        assert.equal(spec.podCIDR, lease.node.podCIDRs[0]);
        const ann = (n.metadata as { annotations: Record<string, string> }).annotations;
        assert.deepEqual(JSON.parse(ann["weft.dev/backend-data"]), lease.node.backendData);
        assert.equal(ann["weft.dev/underlay-addresses"], lease.node.addresses.join(","));
        const internal = (n.status as { addresses: Array<{ type: string; address: string }> }).addresses
          .filter((x) => x.type === "InternalIP")
          .map((x) => x.address);
        assert.deepEqual(internal, lease.node.addresses);
      }
      assert.equal(new Set([...l1.node.podCIDRs, ...l2.node.podCIDRs]).size, 4, "no subnet twice");
      // The columns a person reads.
      const cols = kubectl(
        kubeconfig,
        "get",
        "nodes",
        "-o",
        "custom-columns=NAME:.metadata.name,CIDRS:.spec.podCIDRs,IP:.status.addresses[0].address",
        "--no-headers",
      );
      const esc = (t: string): string => t.replace(/[.[\]]/g, "\\$&");
      assert.match(cols, new RegExp(`^kc-1\\s+${esc(`[${l1.node.podCIDRs.join(" ")}]`)}\\s+192\\.0\\.2\\.31$`, "m"));
      // Liveness is weft's own Lease per node (kube-node-lease is the kubelets'), renewed by the agent.
      const leases = JSON.parse(
        kubectl(kubeconfig, "-n", "kube-system", "get", "leases", "-l", "weft.dev/node-lease=true", "-o", "json"),
      ) as {
        items: Array<{ metadata: { name: string }; spec: { holderIdentity: string; renewTime: string } }>;
      };
      assert.deepEqual(leases.items.map((l) => `${l.metadata.name}=${l.spec.holderIdentity}`).sort(), [
        "weft-node-kc-1=kc-1",
        "weft-node-kc-2=kc-2",
      ]);
      assert.equal(kubectl(kubeconfig, "-n", "kube-node-lease", "get", "leases", "-o", "name").trim(), "");
      const t0 = Date.parse(leases.items[0].spec.renewTime);
      await waitFor(
        "a lease renewal",
        () => {
          const now = JSON.parse(
            kubectl(kubeconfig, "-n", "kube-system", "get", "lease", leases.items[0].metadata.name, "-o", "json"),
          ) as { spec: { renewTime: string } };
          return Date.parse(now.spec.renewTime) > t0 || undefined;
        },
        15_000,
      );
      // A subnet claim per pod subnet, held by its node.
      const claims = JSON.parse(
        kubectl(kubeconfig, "-n", "kube-system", "get", "leases", "-l", "weft.dev/subnet-claim=true", "-o", "json"),
      ) as { items: Array<{ metadata: { annotations: Record<string, string> }; spec: { holderIdentity: string } }> };
      assert.deepEqual(
        claims.items.map((c) => `${c.metadata.annotations["weft.dev/cidr"]}=${c.spec.holderIdentity}`).sort(),
        [...l1.node.podCIDRs.map((c) => `${c}=kc-1`), ...l2.node.podCIDRs.map((c) => `${c}=kc-2`)].sort(),
      );
      // kubectl deleting the Node: weft's watchers see it go.
      const seen = collector<NodeInfo>();
      const w = a.watchNodes(seen.listener);
      await w.ready;
      kubectl(kubeconfig, "delete", "node", "kc-2");
      await waitFor("removed after kubectl delete node", () =>
        seen.events.find((e) => e.type === "removed" && e.object.name === "kc-2"),
      );
      assert.deepEqual(
        (await a.listNodes()).map((n) => n.name),
        ["kc-1"],
      );
      await w.close();
      // A lease left renewing would re-register its node after the next test's wipe.
      await l1.release();
      await l2.release();
    },
  );

  test(
    "a Node and Lease its kubelet made: weft never writes the kubelet's Lease or addresses, adds podCIDRs, annotations and NetworkUnavailable=False, never deletes the Node",
    { timeout: 90_000 },
    async () => {
      const { kubeconfig } = await api();
      await wipe(kubeconfig);
      const a = await open();
      await a.initCluster({ clusterCIDRs: ["10.20.0.0/16", "fd00:20::/48"], backend: "host-gw" });
      // What a kubelet does: create the Node, report Ready with its own addresses, heartbeat its Lease.
      const kc = KubeClient.fromFile(kubeconfig);
      const kubeletLease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
      let writes: string[] = [];
      let inf: { ready: Promise<void>; close(): Promise<void> } | undefined;
      try {
        const node = await kc.request<Json>("POST", "/api/v1/nodes", {
          body: {
            apiVersion: "v1",
            kind: "Node",
            metadata: { name: "kl-1", labels: { "kubernetes.io/hostname": "kl-1" } },
          },
        });
        const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
        await kc.request("PUT", "/api/v1/nodes/kl-1/status", {
          body: {
            ...node,
            status: {
              addresses: [
                { type: "InternalIP", address: "192.0.2.41" },
                { type: "Hostname", address: "kl-1" },
              ],
              conditions: [
                {
                  type: "Ready",
                  status: "True",
                  reason: "KubeletReady",
                  message: "test kubelet",
                  lastHeartbeatTime: now,
                  lastTransitionTime: now,
                },
              ],
            },
          },
        });
        const lease = await kc.request<Json>("POST", kubeletLease, {
          body: {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name: "kl-1", namespace: "kube-node-lease" },
            spec: { holderIdentity: "kl-1", leaseDurationSeconds: 40, renewTime: microTime() },
          },
        });
        const rv = (lease.metadata as { resourceVersion: string }).resourceVersion;
        // Every write to the kubelet's Lease from now on is one too many.
        inf = runInformer(kc, kubeletLease, {
          upsert: (o) => {
            const v = (o.metadata as { resourceVersion: string }).resourceVersion;
            if (v !== rv) writes.push(`written: ${v}`);
          },
          remove: () => writes.push("deleted"),
        });
        await inf.ready;
        writes = [];

        // weft's agent on that node, with another underlay address than the kubelet reports.
        const held = await a.registerNode(
          { name: "kl-1", addresses: ["198.51.100.41"], backendData: { k: "v" } },
          { ttlSeconds: 2 },
        );
        const renewedBefore = async (): Promise<number> =>
          Date.parse(((await kc.request<Json>("GET", nodeLeasePath("kl-1"))).spec as { renewTime: string }).renewTime);
        const t0 = await renewedBefore();
        await waitFor(
          "weft renews its own Lease",
          async () => ((await renewedBefore()) > t0 ? true : undefined),
          15_000,
        );
        await held.update({ backendData: { k: "w" } });
        const out = JSON.parse(kubectl(kubeconfig, "get", "node", "kl-1", "-o", "json")) as {
          metadata: { labels: Record<string, string>; annotations: Record<string, string>; uid: string };
          spec: { podCIDRs: string[] };
          status: {
            addresses: Array<{ type: string; address: string }>;
            conditions: Array<{ type: string; status: string; reason: string }>;
          };
        };
        assert.equal(out.spec.podCIDRs.length, 2);
        assert.deepEqual(out.spec.podCIDRs, held.node.podCIDRs);
        assert.equal(out.metadata.annotations["weft.dev/pod-cidrs"], held.node.podCIDRs.join(","));
        assert.equal(out.metadata.annotations["weft.dev/underlay-addresses"], "198.51.100.41");
        assert.equal(out.metadata.labels["kubernetes.io/hostname"], "kl-1");
        assert.deepEqual(out.status.addresses, [
          { type: "InternalIP", address: "192.0.2.41" },
          { type: "Hostname", address: "kl-1" },
        ]);
        assert.deepEqual(out.status.conditions.map((c) => `${c.type}=${c.status}`).sort(), [
          "NetworkUnavailable=False",
          "Ready=True",
        ]);
        assert.equal(out.status.conditions.find((c) => c.type === "NetworkUnavailable")?.reason, "WeftIsUp");
        assert.match(kubectl(kubeconfig, "get", "nodes", "--no-headers"), /^kl-1\s+Ready\s/m);
        // weft's view has its own address; stop, and remove the node from weft: the Node stays.
        assert.deepEqual((await a.getNode("kl-1"))?.addresses, ["198.51.100.41"]);
        await held.release();
        await a.removeNode("kl-1");
        const after = JSON.parse(kubectl(kubeconfig, "get", "node", "kl-1", "-o", "json")) as {
          metadata: { uid: string; annotations?: Record<string, string> };
        };
        assert.equal(after.metadata.uid, out.metadata.uid, "the Node was deleted or re-created");
        assert.equal(after.metadata.annotations?.["weft.dev/backend-data"], undefined);
        assert.equal(await a.getNode("kl-1"), undefined);
        // Let a watch event that is on its way arrive before judging.
        await kc.request("GET", `${kubeletLease}/kl-1`);
        await new Promise((r) => setImmediate(r));
        assert.deepEqual(writes, [], "weft wrote the kubelet's Lease");
        const finalRv = (
          (await kc.request<Json>("GET", `${kubeletLease}/kl-1`)).metadata as { resourceVersion: string }
        ).resourceVersion;
        assert.equal(finalRv, rv, "the kubelet's Lease changed");
      } finally {
        await inf?.close();
        kc.close();
      }
    },
  );

  test(
    "a weft annotation hand-edited with kubectl is a problem weft status shows, not a node without data",
    { timeout: 90_000 },
    async () => {
      const { kubeconfig } = await api();
      await wipe(kubeconfig);
      const a = await open();
      await a.initCluster({ clusterCIDRs: ["10.30.0.0/16"], backend: "vxlan" });
      const held = await a.registerNode({ name: "he-1", addresses: ["192.0.2.51"], backendData: { backend: "{}" } });
      kubectl(kubeconfig, "annotate", "--overwrite", "node", "he-1", "weft.dev/backend-data={not json");
      const [n] = await a.listNodes();
      assert.match(n.problem ?? "", /annotation weft\.dev\/backend-data of Node he-1 is not valid JSON/);
      const cli = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "cli", "main.js");
      const r = spawnSync(
        process.execPath,
        [cli, "status", "-o", "json", "--store", "kubernetes", "--kubeconfig", kubeconfig],
        { encoding: "utf8", timeout: 30_000 },
      );
      assert.equal(r.status, 0, r.stderr);
      const st = JSON.parse(r.stdout) as {
        nodes: Array<{ name: string; problem: string | null }>;
        problems: string[];
        healthy: boolean;
      };
      assert.match(st.nodes.find((x) => x.name === "he-1")?.problem ?? "", /not valid JSON/);
      assert.ok(
        st.problems.some((p) => p.startsWith("he-1: annotation weft.dev/backend-data")),
        st.problems.join("\n"),
      );
      assert.equal(st.healthy, false);
      await held.release();
    },
  );

  test(
    "a dead node's subnet goes to another node; its Node stays (weft never deletes one) and it cannot come back with that subnet",
    { timeout: 90_000 },
    async () => {
      const { kubeconfig } = await api();
      await wipe(kubeconfig);
      const a = await open();
      await a.initCluster({ clusterCIDRs: ["10.40.0.0/24"], backend: "vxlan", nodeSubnetPrefix: { v4: 24 } });
      const first = await a.registerNode(
        { name: "old-node", addresses: ["192.0.2.61"] },
        { ttlSeconds: 1, subnetGraceSeconds: 1 },
      );
      const uid = JSON.parse(kubectl(kubeconfig, "get", "node", "old-node", "-o", "json")).metadata.uid as string;
      await a.close(); // dies
      const b = await open();
      // A newcomer takes the dead node's subnet (the only one) once its grace period ran out.
      const lease = await waitFor("the subnet back in the pool", async () => {
        try {
          return await b.registerNode({ name: "new-node", addresses: ["192.0.2.62"] });
        } catch (e) {
          if ((e as { code?: string }).code === "Exhausted") return undefined;
          throw e;
        }
      });
      assert.deepEqual(lease.node.podCIDRs, first.node.podCIDRs);
      assert.equal(JSON.parse(kubectl(kubeconfig, "get", "node", "old-node", "-o", "json")).metadata.uid, uid);
      assert.deepEqual(
        (await b.listNodes()).map((n) => n.name),
        ["new-node"],
      );
      // The dead node's Node keeps its (immutable) podCIDRs: coming back, it is told what to do.
      await assert.rejects(
        b.registerNode({ name: "old-node", addresses: ["192.0.2.61"] }),
        (e: unknown) =>
          e instanceof ConflictError &&
          /node new-node holds that subnet now/.test(e.message) &&
          /kubectl delete node old-node/.test(e.message),
      );
    },
  );

  test(
    "pod status written through the store is what kubectl shows (the lab kubelet's path)",
    { timeout: 90_000 },
    async () => {
      const { kubeconfig } = await api();
      await wipe(kubeconfig);
      const s = await open();
      await s.objects.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "lab" } });
      const pod = await s.objects.create({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "p1", namespace: "lab" },
        spec: { containers: [{ name: "c", image: "busybox" }] },
      });
      assert.equal(pod.status?.phase, "Pending", "the apiserver defaults a new pod to Pending");
      await s.objects.updateStatus(
        { kind: "Pod", name: "p1", namespace: "lab" },
        { phase: "Running", podIP: "10.244.7.9", podIPs: [{ ip: "10.244.7.9" }] },
      );
      const wide = kubectl(kubeconfig, "-n", "lab", "get", "pod", "p1", "-o", "wide", "--no-headers");
      assert.match(wide, /^p1\s+\S+\s+Running\s.*\s10\.244\.7\.9\s/);
      // Namespaces carry kubernetes.io/metadata.name in weft's model, also the ones weft did not create.
      const def = await s.objects.get({ kind: "Namespace", name: "default" });
      assert.equal(def.metadata.labels?.["kubernetes.io/metadata.name"], "default");
      await assert.rejects(
        s.objects.create({
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "p2", namespace: "nowhere" },
          spec: { containers: [{ name: "c", image: "busybox" }] },
        }),
        (e: unknown) => e instanceof Error && /namespace "nowhere" not found: create the Namespace/.test(e.message),
      );
    },
  );
});

describe("kubernetes store: apiserver outage", { skip }, () => {
  const clients: ClusterStore[] = [];
  after(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
  });

  test(
    "apiserver down: calls fail with Unavailable at once; the lease is lost, then restored; watches carry on",
    { timeout: 120_000 },
    async () => {
      const a0 = await api();
      await wipe(a0.kubeconfig);
      const open = (): ClusterStore => {
        const s = openKubernetesStore({ kubeconfig: a0.kubeconfig, requestTimeoutMs: 3000 });
        clients.push(s);
        return s;
      };
      const a = open();
      const b = open();
      await a.initCluster({ clusterCIDRs: ["10.30.0.0/16"], backend: "vxlan" });
      const seen = collector<NodeInfo>();
      const w = b.watchNodes(seen.listener);
      await w.ready;
      const lease = await a.registerNode(
        { name: "through", addresses: ["192.0.2.51"] },
        { ttlSeconds: 2, subnetGraceSeconds: 60 },
      );
      const states: LeaseState[] = [];
      lease.onStateChange((s) => states.push(s));
      await waitFor("added", () => seen.events.find((e) => e.type === "added" && e.object.name === "through"));

      await a0.kill();
      const t0 = Date.now();
      await assert.rejects(
        b.listNodes(),
        (e: unknown) => e instanceof UnavailableError && /unreachable/.test(e.message),
      );
      assert.ok(Date.now() - t0 < 2500, "an unreachable apiserver must fail fast, not hang");
      await waitFor("lease lost", () => states.find((s) => s.state === "lost"), 20_000);
      // Others see the node go when its Lease runs out (no apiserver needed for that).
      await waitFor(
        "removed while the apiserver is down",
        () => seen.events.find((e) => e.type === "removed" && e.object.name === "through"),
        20_000,
      );

      await a0.start();
      const restored = await waitFor("lease restored", () => states.find((s) => s.state === "restored"), 30_000);
      assert.equal(
        restored.state === "restored" && restored.node.podCIDRs[0],
        lease.node.podCIDRs[0],
        "same subnet after the outage",
      );
      await open().registerNode({ name: "after", addresses: ["192.0.2.52"] });
      await waitFor(
        "the watch sees nodes registered after the outage",
        () => seen.events.find((e) => e.type === "added" && e.object.name === "after"),
        30_000,
      );
      await waitFor(
        "the restored node is back in the watch",
        () => seen.events.filter((e) => e.type === "added" && e.object.name === "through").length >= 2 || undefined,
        30_000,
      );
      assert.deepEqual(
        (await b.listNodes()).map((n) => n.name),
        ["after", "through"],
      );
      await w.close();
    },
  );
});
