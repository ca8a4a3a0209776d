// weft next to a real kube-controller-manager (played by the test, which sets spec.podCIDRs as
// --allocate-node-cidrs does), against a real kube-apiserver 1.20.2: podCIDRSource "node" takes the
// Node's podCIDRs (waiting for them, dual-stack, validated), "weft" refuses podCIDRs someone else
// set, and long node names get a hashed liveness Lease.
import { after, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { waitFor } from "../cases.js";
import { KubeClient, openKubernetesStore, type KubernetesStore } from "./index.js";
import { startKubeApiserver, kubeApiserverBinary, type KubeApiserver } from "../../lab/apiserver-process.js";
import type { Json } from "./client.js";
import { nodeLeaseName, nodeLeasePath, nodePath } from "./layout.js";
import { wipe } from "./testing.js";
import { ConflictError, InvalidError, UnavailableError } from "../types.js";

const BIN = kubeApiserverBinary();
const skip = existsSync(BIN) ? false : `${BIN} is missing: build it with \`bash scripts/kube-binaries.sh\``;

describe("kubernetes store beside kube-controller-manager", { skip }, () => {
  let apiserver: Promise<KubeApiserver> | undefined;
  const api = (): Promise<KubeApiserver> => (apiserver ??= startKubeApiserver());
  const stores: KubernetesStore[] = [];
  const admins: KubeClient[] = [];
  const open = async (o: { podCIDRWaitMs?: number; log?: (l: string) => void } = {}): Promise<KubernetesStore> => {
    const s = openKubernetesStore({ kubeconfig: (await api()).kubeconfig, requestTimeoutMs: 5000, ...o });
    stores.push(s);
    return s;
  };
  const admin = async (): Promise<KubeClient> => {
    const c = KubeClient.fromFile((await api()).kubeconfig);
    admins.push(c);
    return c;
  };
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(stores.splice(0).map((s) => s.close()));
    for (const c of admins.splice(0)) c.close();
  };
  beforeEach(async () => {
    await closeAll();
    await wipe((await api()).kubeconfig);
  });
  after(async () => {
    await closeAll();
    if (apiserver) await (await apiserver).stop();
  });

  /** What a kubelet does first: a Node without podCIDRs. */
  const kubeletNode = async (c: KubeClient, name: string): Promise<Json> =>
    c.request("POST", nodePath(), {
      body: { apiVersion: "v1", kind: "Node", metadata: { name, labels: { "kubernetes.io/hostname": name } } },
    });
  /** What kube-controller-manager --allocate-node-cidrs does: set spec.podCIDRs once. */
  const allocate = async (c: KubeClient, name: string, podCIDRs: string[]): Promise<Json> =>
    c.request("PATCH", nodePath(name), {
      contentType: "application/merge-patch+json",
      body: { spec: { podCIDR: podCIDRs[0], podCIDRs } },
    });

  test(
    "podCIDRSource node: registration waits for the Node's podCIDRs, takes them in cluster-CIDR order (dual-stack), claims nothing",
    { timeout: 90_000 },
    async () => {
      const c = await admin();
      const lines: string[] = [];
      const s = await open({ log: (l) => lines.push(l) });
      await s.initCluster({
        clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"],
        backend: "vxlan",
        podCIDRSource: "node",
      });
      // The agent starts before the kubelet registered the Node.
      const registering = s.registerNode({ name: "cm-1", addresses: ["192.0.2.71"] }, { ttlSeconds: 3 });
      await waitFor("the log line saying what registration waits for", () =>
        lines.find((l) => /waiting .* for Node cm-1 to get spec\.podCIDRs from kube-controller-manager/.test(l)),
      );
      await kubeletNode(c, "cm-1");
      // Still waiting: the Node has no podCIDRs yet.
      const early = await Promise.race([
        registering.then(() => "registered"),
        new Promise((r) => setTimeout(r, 300, "waiting")),
      ]);
      assert.equal(early, "waiting");
      // The controller-manager's order may be IPv6 first; weft's is its cluster CIDRs' order.
      await allocate(c, "cm-1", ["fd00:10:244:7::/64", "10.244.7.0/24"]);
      const lease = await registering;
      assert.deepEqual(lease.node.podCIDRs, ["10.244.7.0/24", "fd00:10:244:7::/64"]);
      assert.deepEqual(await s.listSubnetClaims(), [], "no claim Leases with podCIDRSource node");
      assert.deepEqual((await s.getNode("cm-1"))?.podCIDRs, ["10.244.7.0/24", "fd00:10:244:7::/64"]);
      const node = await c.request<Json>("GET", nodePath("cm-1"));
      const conds = (node.status as { conditions: Array<{ type: string; status: string; reason: string }> }).conditions;
      assert.deepEqual(
        conds.map((x) => `${x.type}=${x.status}/${x.reason}`),
        ["NetworkUnavailable=False/WeftIsUp"],
      );
      // A restarted agent finds the podCIDRs at once (no wait, no log line).
      await lease.release();
      lines.length = 0;
      const again = await (
        await open({ log: (l) => lines.push(l) })
      ).registerNode({ name: "cm-1", addresses: ["192.0.2.71"] });
      assert.deepEqual(again.node.podCIDRs, lease.node.podCIDRs);
      assert.deepEqual(lines, []);
      await again.release();
    },
  );

  test(
    "podCIDRSource node: a Node that never gets podCIDRs, or gets ones outside the cluster CIDRs, fails with what to do",
    { timeout: 90_000 },
    async () => {
      const c = await admin();
      const s = await open({ podCIDRWaitMs: 1500, log: () => undefined });
      await s.initCluster({
        clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"],
        backend: "vxlan",
        podCIDRSource: "node",
      });
      await kubeletNode(c, "cm-none");
      const t0 = Date.now();
      await assert.rejects(
        s.registerNode({ name: "cm-none", addresses: ["192.0.2.72"] }),
        (e: unknown) =>
          e instanceof UnavailableError &&
          /Node cm-none has no spec\.podCIDRs/.test(e.message) &&
          /--allocate-node-cidrs and --cluster-cidr/.test(e.message) &&
          /podCIDRSource "weft"/.test(e.message),
      );
      assert.ok(Date.now() - t0 < 15_000, "the wait is bounded");
      // No Node at all: the same bounded wait (weft does not create Nodes in this mode).
      await assert.rejects(
        s.registerNode({ name: "cm-absent", addresses: ["192.0.2.73"] }),
        /Node cm-absent has no spec\.podCIDRs/,
      );
      assert.equal(
        (await c.request<{ items: Json[] }>("GET", nodePath(), { query: { fieldSelector: "metadata.name=cm-absent" } }))
          .items.length,
        0,
      );

      await kubeletNode(c, "cm-out");
      await allocate(c, "cm-out", ["10.99.1.0/24", "fd00:10:244:1::/64"]);
      await assert.rejects(
        s.registerNode({ name: "cm-out", addresses: ["192.0.2.74"] }),
        (e: unknown) =>
          e instanceof InvalidError &&
          /10\.99\.1\.0\/24 is outside weft's cluster CIDRs/.test(e.message) &&
          /--cluster-cidr/.test(e.message),
      );
      // Dual-stack cluster, single-stack Node: says which family is missing.
      await kubeletNode(c, "cm-v4");
      await allocate(c, "cm-v4", ["10.244.9.0/24"]);
      await assert.rejects(
        s.registerNode({ name: "cm-v4", addresses: ["192.0.2.75"] }),
        (e: unknown) => e instanceof InvalidError && /Node cm-v4 has no IPv6 podCIDR/.test(e.message),
      );
      // The Node that waited in vain gets its podCIDRs while an agent waits: it registers.
      const s2 = await open({ podCIDRWaitMs: 30_000, log: () => undefined });
      const p = s2.registerNode({ name: "cm-none", addresses: ["192.0.2.72"] });
      await allocate(c, "cm-none", ["10.244.3.0/24", "fd00:10:244:3::/64"]);
      assert.deepEqual((await p).node.podCIDRs, ["10.244.3.0/24", "fd00:10:244:3::/64"]);
    },
  );

  test(
    "podCIDRSource weft: a kubelet's Node without podCIDRs gets weft's; one whose podCIDRs the controller-manager set is refused, naming podCIDRSource node",
    { timeout: 90_000 },
    async () => {
      const c = await admin();
      const s = await open();
      await s.initCluster({ clusterCIDRs: ["10.50.0.0/16", "fd00:50::/48"], backend: "vxlan" });
      await kubeletNode(c, "w-empty");
      const l = await s.registerNode({ name: "w-empty", addresses: ["192.0.2.81"] });
      const spec = (await c.request<Json>("GET", nodePath("w-empty"))).spec as { podCIDRs: string[] };
      assert.deepEqual(spec.podCIDRs, l.node.podCIDRs);
      assert.equal((await s.listSubnetClaims()).length, 2);

      await kubeletNode(c, "w-cm");
      await allocate(c, "w-cm", ["10.50.200.0/24", "fd00:50:0:c8::/64"]);
      await assert.rejects(
        s.registerNode({ name: "w-cm", addresses: ["192.0.2.82"] }),
        (e: unknown) =>
          e instanceof ConflictError &&
          /Node w-cm already has spec\.podCIDRs 10\.50\.200\.0\/24,fd00:50:0:c8::\/64 that weft did not assign/.test(
            e.message,
          ) &&
          /podCIDRSource "node"/.test(e.message),
      );
      // Nothing half-made: no claims for w-cm, no weft annotations on its Node.
      assert.equal((await s.listSubnetClaims()).filter((x) => x.node === "w-cm").length, 0);
      const ann = (
        (await c.request<Json>("GET", nodePath("w-cm"))).metadata as { annotations?: Record<string, string> }
      ).annotations;
      assert.equal(ann?.["weft.dev/backend-data"], undefined);
      // A restart of w-empty's agent keeps the subnets weft gave that Node (they cannot change).
      await l.release();
      const again = await (await open()).registerNode({ name: "w-empty", addresses: ["192.0.2.81"] });
      assert.deepEqual(again.node.podCIDRs, l.node.podCIDRs);
      await again.release();
    },
  );

  test("a node name too long for weft-node-<name> gets a hashed liveness Lease", { timeout: 60_000 }, async () => {
    const s = await open();
    await s.initCluster({ clusterCIDRs: ["10.60.0.0/16"], backend: "vxlan" });
    const name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(60)].join(".");
    assert.equal(name.length, 252);
    const l = await s.registerNode({ name, addresses: ["192.0.2.91"] });
    assert.match(nodeLeaseName(name), /^weft-node-[0-9a-f]{40}$/);
    const c = await admin();
    const lease = await c.request<Json>("GET", nodeLeasePath(name));
    assert.equal((lease.metadata as { annotations: Record<string, string> }).annotations["weft.dev/node"], name);
    assert.deepEqual(
      (await s.listNodes()).map((n) => n.name),
      [name],
    );
    await l.release();
  });
});
