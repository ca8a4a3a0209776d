// The shared case suite: every ClusterStore implementation must pass these (Hono-style: one suite,
// a factory per implementation). Each case gets a fresh, empty cluster and opens as many separate
// clients to it as it needs (separate SQLite connections / separate etcd clients), like separate
// agents and CLI invocations would.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { cidrContains } from "../net/cidr.js";
import { parseCidr } from "./validate.js";
import {
  ConflictError,
  ExhaustedError,
  InvalidError,
  NotFoundError,
  NotInitializedError,
  type ClusterStore,
  type NodeInfo,
  type StoredObject,
  type WatchEvent,
} from "./types.js";

export interface ClusterFixture {
  /** A new client to this fixture's cluster. Closed by the fixture's cleanup if the case does not. */
  connect(): ClusterStore;
}

export interface StoreHarness {
  name: string;
  /** A fresh, empty cluster (new file / new key prefix). */
  fresh(): Promise<ClusterFixture>;
  /** Called once after all cases. */
  teardown?(): Promise<void>;
}

/** Opens clients and closes whatever is still open when the case ends. */
export function trackingFixture(open: () => ClusterStore): ClusterFixture & { closeAll(): Promise<void> } {
  const clients: ClusterStore[] = [];
  return {
    connect: () => {
      const c = open();
      clients.push(c);
      return c;
    },
    closeAll: async () => {
      await Promise.allSettled(clients.map((c) => c.close()));
    },
  };
}

export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${String(lastErr)})` : ""}`,
  );
}

export function collector<T>(): { events: WatchEvent<T>[]; listener: (e: WatchEvent<T>) => void } {
  const events: WatchEvent<T>[] = [];
  return { events, listener: (e) => events.push(e) };
}

/** Namespaces a real apiserver always has (the key-value stores have none). */
const SYSTEM_NAMESPACES = new Set(["default", "kube-system", "kube-public", "kube-node-lease"]);
/** The status fields the cases write (an apiserver adds more: podIPs, qosClass, ...). */
const written = (o: StoredObject): { phase: unknown; podIP: unknown } => ({
  phase: o.status?.phase,
  podIP: o.status?.podIP,
});

const DUAL = { clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"], backend: "vxlan" as const };
const CASE_TIMEOUT = { timeout: 90_000 };

export function storeCases(h: StoreHarness): void {
  describe(`ClusterStore cases: ${h.name}`, () => {
    after(async () => {
      await h.teardown?.();
    });

    const withCluster = (name: string, fn: (f: ClusterFixture) => Promise<void>): void => {
      test(name, CASE_TIMEOUT, async () => {
        const f = await h.fresh();
        await fn(f);
      });
    };

    withCluster("settings round trip, with defaults filled in", async (f) => {
      const a = f.connect();
      assert.equal(await a.getClusterSettings(), undefined);
      const { settings, created } = await a.initCluster({
        clusterCIDRs: ["10.244.0.0/16", "FD00:10:244::/48"],
        backend: "host-gw",
        mtu: 1400,
      });
      assert.equal(created, true);
      assert.deepEqual(settings, {
        clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"],
        backend: "host-gw",
        mtu: 1400,
        nodeSubnetPrefix: { v4: 24, v6: 64 },
        podCIDRSource: "weft",
        ipMasq: true,
        encryption: { type: "none", strict: true, nodeToNode: false },
      });
      const b = f.connect();
      assert.deepEqual(await b.getClusterSettings(), settings);
    });

    withCluster("init is compare-and-swap: same settings again is a no-op, different ones are refused", async (f) => {
      const a = f.connect();
      await a.initCluster({ clusterCIDRs: ["10.1.0.0/16"], backend: "vxlan", nodeSubnetPrefix: { v4: 26 } });
      const again = await f
        .connect()
        .initCluster({ clusterCIDRs: ["10.1.0.0/16"], backend: "vxlan", nodeSubnetPrefix: { v4: 26 } });
      assert.equal(again.created, false);
      await assert.rejects(
        f.connect().initCluster({ clusterCIDRs: ["10.2.0.0/16"], backend: "vxlan" }),
        (e: unknown) =>
          e instanceof ConflictError && e.reason === "AlreadyInitialized" && /10\.1\.0\.0\/16/.test(e.message),
      );
      assert.deepEqual((await a.getClusterSettings())?.clusterCIDRs, ["10.1.0.0/16"]);
    });

    withCluster("concurrent inits with different settings: exactly one wins", async (f) => {
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          f.connect().initCluster({ clusterCIDRs: [`10.${i}.0.0/16`], backend: "vxlan" }),
        ),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
      for (const r of results)
        if (r.status === "rejected") assert.ok(r.reason instanceof ConflictError, String(r.reason));
      const stored = await f.connect().getClusterSettings();
      assert.deepEqual(stored, (won[0] as PromiseFulfilledResult<{ settings: unknown }>).value.settings);
    });

    withCluster("bad input and a missing init give typed, actionable errors", async (f) => {
      const a = f.connect();
      await assert.rejects(
        a.registerNode({ name: "n1", addresses: ["192.0.2.1"] }),
        (e: unknown) => e instanceof NotInitializedError && /weft cluster init/.test(e.message),
      );
      await assert.rejects(a.initCluster({ clusterCIDRs: ["10.244.1.0/16"], backend: "vxlan" }), InvalidError);
      await assert.rejects(
        a.initCluster({ clusterCIDRs: ["10.0.0.0/16", "10.1.0.0/16"], backend: "vxlan" }),
        InvalidError,
      );
      await assert.rejects(a.initCluster({ clusterCIDRs: ["10.0.0.0/16"], backend: "ipip" as never }), InvalidError);
      await assert.rejects(
        a.initCluster({ clusterCIDRs: ["10.0.0.0/16"], backend: "vxlan", nodeSubnetPrefix: { v4: 8 } }),
        InvalidError,
      );
      await a.initCluster(DUAL);
      await assert.rejects(a.registerNode({ name: "Bad_Name", addresses: ["192.0.2.1"] }), InvalidError);
      await assert.rejects(a.registerNode({ name: "n1", addresses: ["192.0.2.1", "192.0.2.2"] }), InvalidError);
      await assert.rejects(a.registerNode({ name: "n1", addresses: ["not-an-ip"] }), InvalidError);
    });

    withCluster("node registration: list, get and watch from another client", async (f) => {
      const a = f.connect();
      const b = f.connect();
      await a.initCluster(DUAL);
      const seen = collector<NodeInfo>();
      const w = b.watchNodes(seen.listener);
      await w.ready;
      const lease = await a.registerNode(
        { name: "node-1", addresses: ["192.0.2.11", "2001:db8::11"], backendData: { vtepMAC: "aa:bb:cc:00:00:01" } },
        { ttlSeconds: 5, subnetGraceSeconds: 5 },
      );
      const node = lease.node;
      assert.equal(node.podCIDRs.length, 2);
      assert.ok(
        cidrContains(parseCidr("10.244.0.0/16"), parseCidr(node.podCIDRs[0])) && node.podCIDRs[0].endsWith("/24"),
        node.podCIDRs[0],
      );
      assert.ok(
        cidrContains(parseCidr("fd00:10:244::/48"), parseCidr(node.podCIDRs[1])) && node.podCIDRs[1].endsWith("/64"),
        node.podCIDRs[1],
      );
      const added = await waitFor("added event", () =>
        seen.events.find((e) => e.type === "added" && e.object.name === "node-1"),
      );
      assert.deepEqual(added.object.podCIDRs, node.podCIDRs);
      assert.deepEqual(added.object.backendData, { vtepMAC: "aa:bb:cc:00:00:01" });
      assert.equal(added.object.leaseTTLSeconds, 5);
      assert.deepEqual(
        (await b.listNodes()).map((n) => n.name),
        ["node-1"],
      );
      assert.deepEqual((await b.getNode("node-1"))?.addresses, ["192.0.2.11", "2001:db8::11"]);
      assert.deepEqual((await b.listSubnetClaims()).map((c) => c.cidr).sort(), [...node.podCIDRs].sort());

      await lease.update({ backendData: { vtepMAC: "aa:bb:cc:00:00:02" } });
      const upd = await waitFor("updated event", () => seen.events.find((e) => e.type === "updated"));
      assert.equal(upd.type === "updated" && upd.previous.backendData.vtepMAC, "aa:bb:cc:00:00:01");
      assert.equal(upd.object.backendData.vtepMAC, "aa:bb:cc:00:00:02");
      assert.deepEqual(upd.object.podCIDRs, node.podCIDRs);

      // A second watcher with replay sees the existing node first.
      const late = collector<NodeInfo>();
      const w2 = b.watchNodes(late.listener);
      await w2.ready;
      assert.deepEqual(
        late.events.map((e) => `${e.type}:${e.object.name}`),
        ["added:node-1"],
      );

      await lease.release();
      await waitFor("removed event", () => seen.events.find((e) => e.type === "removed" && e.object.name === "node-1"));
      assert.deepEqual(await b.listNodes(), []);
      // Released gracefully: the subnets stay reserved for the grace period.
      assert.deepEqual(
        (await b.listSubnetClaims()).map((c) => c.node),
        ["node-1", "node-1"],
      );
      await w.close();
      await w2.close();
    });

    withCluster("20 agents registering at once get 20 distinct subnets per family", async (f) => {
      // A small pool (32 subnets) so the agents really collide and the CAS has to resolve it.
      await f.connect().initCluster({ clusterCIDRs: ["10.32.0.0/19", "fd00:32::/59"], backend: "vxlan" });
      const clients = Array.from({ length: 20 }, () => f.connect());
      const leases = await Promise.all(
        clients.map((c, i) =>
          c.registerNode(
            { name: `node-${i}`, addresses: [`192.0.2.${i + 1}`] },
            { ttlSeconds: 10, subnetGraceSeconds: 5 },
          ),
        ),
      );
      const v4 = leases.map((l) => l.node.podCIDRs[0]);
      const v6 = leases.map((l) => l.node.podCIDRs[1]);
      assert.equal(new Set(v4).size, 20, v4.join(" "));
      assert.equal(new Set(v6).size, 20, v6.join(" "));
      for (const c of v4) assert.ok(cidrContains(parseCidr("10.32.0.0/19"), parseCidr(c)), c);
      for (const c of v6) assert.ok(cidrContains(parseCidr("fd00:32::/59"), parseCidr(c)), c);
      const listed = await f.connect().listNodes();
      assert.equal(listed.length, 20);
      for (const n of listed) assert.deepEqual(n.podCIDRs, leases.find((l) => l.node.name === n.name)?.node.podCIDRs);
      const claims = await f.connect().listSubnetClaims();
      assert.equal(claims.length, 40);
    });

    withCluster("a full pool gives ExhaustedError; nothing is handed out twice", async (f) => {
      await f
        .connect()
        .initCluster({ clusterCIDRs: ["10.5.0.0/24"], backend: "host-gw", nodeSubnetPrefix: { v4: 26 } });
      const leases = await Promise.all(
        [0, 1, 2, 3].map((i) => f.connect().registerNode({ name: `n${i}`, addresses: [`192.0.2.${i + 1}`] })),
      );
      assert.deepEqual(leases.map((l) => l.node.podCIDRs[0]).sort(), [
        "10.5.0.0/26",
        "10.5.0.128/26",
        "10.5.0.192/26",
        "10.5.0.64/26",
      ]);
      await assert.rejects(
        f.connect().registerNode({ name: "n4", addresses: ["192.0.2.5"] }),
        (e: unknown) => e instanceof ExhaustedError && /10\.5\.0\.0\/24/.test(e.message),
      );
    });

    withCluster("a restarted agent (same node name) gets its own subnets back", async (f) => {
      await f.connect().initCluster(DUAL);
      const a = f.connect();
      const first = await a.registerNode(
        { name: "node-r", addresses: ["192.0.2.7"] },
        { ttlSeconds: 2, subnetGraceSeconds: 30 },
      );
      const others = await Promise.all(
        [1, 2, 3].map((i) => f.connect().registerNode({ name: `other-${i}`, addresses: [`192.0.2.${20 + i}`] })),
      );
      await a.close(); // crash: no revoke
      const b = f.connect();
      const second = await b.registerNode(
        { name: "node-r", addresses: ["192.0.2.8"] },
        { ttlSeconds: 2, subnetGraceSeconds: 30 },
      );
      assert.deepEqual(second.node.podCIDRs, first.node.podCIDRs);
      assert.deepEqual((await b.getNode("node-r"))?.addresses, ["192.0.2.8"]);
      for (const o of others) assert.notDeepEqual(o.node.podCIDRs, first.node.podCIDRs);
      // After a graceful release too.
      await second.release();
      const third = await f.connect().registerNode({ name: "node-r", addresses: ["192.0.2.8"] });
      assert.deepEqual(third.node.podCIDRs, first.node.podCIDRs);
      // The old lease's expiry must not delete the re-registered node.
      await new Promise((r) => setTimeout(r, 3500));
      assert.ok(await f.connect().getNode("node-r"), "node-r vanished when its previous lease expired");
    });

    withCluster("lease expiry removes the node; its subnet is reused only after the grace period", async (f) => {
      // A pool of exactly one subnet makes "reused too early" observable.
      await f.connect().initCluster({ clusterCIDRs: ["10.9.0.0/24"], backend: "vxlan", nodeSubnetPrefix: { v4: 24 } });
      const watcher = f.connect();
      const seen = collector<NodeInfo>();
      const w = watcher.watchNodes(seen.listener);
      await w.ready;
      const a = f.connect();
      const lease = await a.registerNode(
        { name: "dies", addresses: ["192.0.2.1"] },
        { ttlSeconds: 1, subnetGraceSeconds: 4 },
      );
      assert.deepEqual(lease.node.podCIDRs, ["10.9.0.0/24"]);
      await waitFor("added", () => seen.events.find((e) => e.type === "added"));
      await a.close(); // the agent dies: no more renewals
      await waitFor("removed after lease expiry", () =>
        seen.events.find((e) => e.type === "removed" && e.object.name === "dies"),
      );
      assert.deepEqual(await watcher.listNodes(), []);
      // Still within the grace period: the subnet is reserved for the dead node.
      assert.deepEqual(
        (await watcher.listSubnetClaims()).map((c) => `${c.cidr}=${c.node}`),
        ["10.9.0.0/24=dies"],
      );
      await assert.rejects(watcher.registerNode({ name: "newcomer", addresses: ["192.0.2.2"] }), ExhaustedError);
      // After the grace period it returns to the pool.
      const got = await waitFor("subnet back in the pool", async () => {
        try {
          return await watcher.registerNode({ name: "newcomer", addresses: ["192.0.2.2"] }, { ttlSeconds: 5 });
        } catch (e) {
          if (e instanceof ExhaustedError) return undefined;
          throw e;
        }
      });
      assert.deepEqual(got.node.podCIDRs, ["10.9.0.0/24"]);
      await w.close();
    });

    withCluster("removeNode frees the subnets at once", async (f) => {
      await f.connect().initCluster({ clusterCIDRs: ["10.9.0.0/24"], backend: "vxlan", nodeSubnetPrefix: { v4: 24 } });
      const a = f.connect();
      await a.registerNode({ name: "gone", addresses: ["192.0.2.1"] });
      await a.close();
      const b = f.connect();
      await b.removeNode("gone");
      assert.equal(await b.getNode("gone"), undefined);
      const n = await b.registerNode({ name: "next", addresses: ["192.0.2.3"] });
      assert.deepEqual(n.node.podCIDRs, ["10.9.0.0/24"]);
      await assert.rejects(b.removeNode("never-was"), NotFoundError);
    });

    withCluster("objects: create, get, list, apply, status, delete, and watch from another client", async (f) => {
      const a = f.connect().objects;
      const b = f.connect().objects;
      const pods = collector<StoredObject>();
      const w = b.watch("Pod", pods.listener, { namespace: "team-a" });
      await w.ready;

      const ns = await a.create({
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name: "team-a", labels: { env: "dev" } },
      });
      assert.deepEqual(ns.metadata.labels, { env: "dev", "kubernetes.io/metadata.name": "team-a" });
      assert.equal(ns.metadata.namespace, undefined);
      assert.match(ns.metadata.uid, /^[0-9a-f-]{36}$/);
      assert.ok(!Number.isNaN(Date.parse(ns.metadata.creationTimestamp)));

      // Valid for a real apiserver too: containers need an image, namespaces must exist first.
      const podIn = {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "web", namespace: "team-a", labels: { app: "web" } },
        spec: { containers: [{ name: "c", image: "busybox", ports: [{ containerPort: 80 }] }] },
      };
      const pod = await a.create(podIn);
      await assert.rejects(
        a.create(podIn),
        (e: unknown) =>
          e instanceof ConflictError &&
          e.reason === "AlreadyExists" &&
          /pods "web" in namespace "team-a" already exists/.test(e.message),
      );
      await a.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "team-b" } });
      await a.create({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "web", namespace: "team-b" },
        spec: { containers: [{ name: "c", image: "busybox" }] },
      });
      assert.deepEqual(await b.get({ kind: "Pod", name: "web", namespace: "team-a" }), pod);
      assert.deepEqual(
        (await b.list("Pod")).map((p) => `${p.metadata.namespace}/${p.metadata.name}`),
        ["team-a/web", "team-b/web"],
      );
      assert.deepEqual(
        (await b.list("Pod", { namespace: "team-b" })).map((p) => p.metadata.namespace),
        ["team-b"],
      );
      assert.deepEqual(
        (await b.list("Namespace")).map((p) => p.metadata.name).filter((n) => !SYSTEM_NAMESPACES.has(n)),
        ["team-a", "team-b"],
      );

      const same = await b.apply(podIn);
      assert.equal(same.action, "unchanged");
      assert.equal(same.object.metadata.resourceVersion, pod.metadata.resourceVersion);

      const relabeled = await b.apply({
        ...podIn,
        metadata: { ...podIn.metadata, labels: { app: "web", tier: "front" } },
      });
      assert.equal(relabeled.action, "configured");
      assert.equal(relabeled.object.metadata.uid, pod.metadata.uid);
      assert.equal(relabeled.object.metadata.creationTimestamp, pod.metadata.creationTimestamp);
      assert.notEqual(relabeled.object.metadata.resourceVersion, pod.metadata.resourceVersion);

      await assert.rejects(
        a.apply({ ...podIn, metadata: { ...podIn.metadata, resourceVersion: pod.metadata.resourceVersion } }),
        (e: unknown) => e instanceof ConflictError && e.reason === "ResourceVersion",
      );

      const withStatus = await a.updateStatus(
        { kind: "Pod", name: "web", namespace: "team-a" },
        { phase: "Running", podIP: "10.244.1.5" },
      );
      assert.deepEqual(written(withStatus), { phase: "Running", podIP: "10.244.1.5" });
      await assert.rejects(
        a.updateStatus(
          { kind: "Pod", name: "web", namespace: "team-a" },
          { phase: "Failed" },
          { resourceVersion: pod.metadata.resourceVersion },
        ),
        ConflictError,
      );
      // A replace keeps the status (it belongs to the status subresource).
      const reapplied = await a.apply({ ...podIn, metadata: { ...podIn.metadata, annotations: { note: "x" } } });
      assert.deepEqual(written(reapplied.object), { phase: "Running", podIP: "10.244.1.5" });
      assert.deepEqual(reapplied.object.metadata.labels, { app: "web" });

      const created = await a.apply({
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: { name: "deny", namespace: "team-a" },
        spec: { podSelector: {} },
      });
      assert.equal(created.action, "created");

      const deleted = await a.delete({ kind: "Pod", name: "web", namespace: "team-a" });
      assert.equal(deleted.metadata.uid, pod.metadata.uid);
      await assert.rejects(
        b.get({ kind: "Pod", name: "web", namespace: "team-a" }),
        (e: unknown) => e instanceof NotFoundError && /pods "web" in namespace "team-a" not found/.test(e.message),
      );
      await assert.rejects(a.delete({ kind: "Pod", name: "web", namespace: "team-a" }), NotFoundError);

      const want = ["added", "updated", "updated", "updated", "removed"];
      await waitFor("pod watch events", () => pods.events.length >= want.length || undefined);
      assert.deepEqual(
        pods.events.map((e) => e.type),
        want,
        "team-b's pod must not show up in a team-a watch",
      );
      assert.deepEqual(pods.events[0].object.metadata.labels, { app: "web" });
      assert.deepEqual(written(pods.events[2].object), { phase: "Running", podIP: "10.244.1.5" });
      await w.close();

      await assert.rejects(a.get({ kind: "pod", name: "x" }), InvalidError);
      await assert.rejects(
        a.create({ apiVersion: "v1", kind: "Pod", metadata: { name: "UPPER", namespace: "x" } }),
        InvalidError,
      );
    });
  });
}
