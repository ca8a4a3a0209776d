// The shared store cases against a real etcd (Debian's etcd 3.4 on loopback), plus what only a
// networked store has: member failures, a full outage, and recovery by itself.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { storeCases, trackingFixture, waitFor, collector } from "../cases.js";
import { openEtcdStore } from "./index.js";
import { ETCD_BINARY, startEtcd, type EtcdCluster } from "../../lab/etcd-process.js";
import { UnavailableError, type ClusterStore, type LeaseState, type NodeInfo, type StoredObject } from "../types.js";

const skip = existsSync(ETCD_BINARY) ? false : `${ETCD_BINARY} is missing (Debian package etcd-server)`;
const prefix = (): string => `/t-${randomBytes(4).toString("hex")}`;

if (!skip) {
  // One etcd for all shared cases; each case gets its own key prefix, i.e. an empty cluster.
  let etcd: EtcdCluster | undefined;
  const fixtures: Array<{ closeAll(): Promise<void> }> = [];
  storeCases({
    name: "etcd (1 member)",
    fresh: async () => {
      etcd ??= await startEtcd({ members: 1 });
      const endpoints = etcd.endpoints;
      const p = prefix();
      const f = trackingFixture(() => openEtcdStore({ endpoints, prefix: p, requestTimeoutMs: 3000 }));
      fixtures.push(f);
      return f;
    },
    teardown: async () => {
      await Promise.allSettled(fixtures.map((f) => f.closeAll()));
      await etcd?.stop();
    },
  });
}

describe("etcd: member failures and outages", { skip }, () => {
  let etcd: EtcdCluster;
  const clients: ClusterStore[] = [];
  const open = (p: string, requestTimeoutMs = 2000): ClusterStore => {
    const s = openEtcdStore({ endpoints: etcd.endpoints, prefix: p, requestTimeoutMs });
    clients.push(s);
    return s;
  };

  before(async () => {
    etcd = await startEtcd({ members: 3 });
  });
  after(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await etcd?.stop();
  });

  test("3 members, one killed: registration, objects and watches keep working", { timeout: 90_000 }, async () => {
    const p = prefix();
    const a = open(p);
    const b = open(p);
    await a.initCluster({ clusterCIDRs: ["10.244.0.0/16"], backend: "vxlan" });
    await a.registerNode({ name: "before", addresses: ["192.0.2.1"] }, { ttlSeconds: 5 });
    const seen = collector<NodeInfo>();
    const w = b.watchNodes(seen.listener);
    await w.ready;

    await etcd.members[0].kill();
    assert.equal(etcd.members[0].pid, undefined);

    const lease = await a.registerNode({ name: "after", addresses: ["192.0.2.2"] }, { ttlSeconds: 5 });
    assert.equal(lease.node.podCIDRs.length, 1);
    await waitFor("watch event after a member died", () =>
      seen.events.find((e) => e.type === "added" && e.object.name === "after"),
    );
    const applied = await b.objects.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "still-up" } });
    assert.equal(applied.action, "created");
    assert.deepEqual(
      (await a.listNodes()).map((n) => n.name),
      ["after", "before"],
    );
    // Renewals keep going on the surviving members: the node outlives several TTLs.
    await new Promise((r) => setTimeout(r, 6000));
    assert.ok(await b.getNode("after"), "node expired although 2 of 3 members were up");

    await etcd.members[0].start();
    await w.close();
  });

  test(
    "all members down: calls fail with Unavailable (no hang); watches and leases recover by themselves",
    { timeout: 120_000 },
    async () => {
      const p = prefix();
      const a = open(p, 1500);
      const b = open(p, 1500);
      await a.initCluster({ clusterCIDRs: ["10.244.0.0/16"], backend: "vxlan" });
      const lease = await a.registerNode(
        { name: "survivor", addresses: ["192.0.2.1"] },
        { ttlSeconds: 1, subnetGraceSeconds: 60 },
      );
      const cidrsBefore = lease.node.podCIDRs;
      const states: LeaseState[] = [];
      lease.onStateChange((s) => states.push(s));
      const nodes = collector<NodeInfo>();
      const wn = b.watchNodes(nodes.listener);
      const pods = collector<StoredObject>();
      const wp = b.objects.watch("Pod", pods.listener);
      await Promise.all([wn.ready, wp.ready]);

      await Promise.all(etcd.members.map((m) => m.kill()));

      await assert.rejects(
        a.listNodes(),
        (e: unknown) =>
          e instanceof UnavailableError &&
          e.message.includes(etcd.endpoints[0]) &&
          /check that etcd is running/.test(e.message),
      );
      await assert.rejects(
        a.objects.apply({ apiVersion: "v1", kind: "Pod", metadata: { name: "p", namespace: "default" }, spec: {} }),
        UnavailableError,
      );
      await assert.rejects(a.registerNode({ name: "latecomer", addresses: ["192.0.2.9"] }), UnavailableError);
      // Longer than twice the lease TTL: the agent's lease is lost.
      await waitFor("lease lost", () => states.find((s) => s.state === "lost"), 30_000);

      await Promise.all(etcd.members.map((m) => m.start()));

      // The same clients work again (after their circuit breakers close), without reconnect calls.
      const created = await waitFor(
        "apply after etcd came back",
        async () =>
          (
            await a.objects.apply({
              apiVersion: "v1",
              kind: "Pod",
              metadata: { name: "p", namespace: "default" },
              spec: {},
            })
          ).object,
        30_000,
      );
      const ev = await waitFor(
        "watch resumed by itself",
        () => pods.events.find((e) => e.type === "added" && e.object.metadata.name === "p"),
        30_000,
      );
      assert.equal(ev.object.metadata.uid, created.metadata.uid);
      const restored = await waitFor("lease restored", () => states.find((s) => s.state === "restored"), 30_000);
      assert.deepEqual(
        restored.state === "restored" && restored.node.podCIDRs,
        cidrsBefore,
        "the node got different subnets after the outage",
      );
      assert.ok(await waitFor("node listed again", () => b.getNode("survivor"), 30_000));
      await wn.close();
      await wp.close();
    },
  );
});

test(
  "etcd launcher: a persistent member outlives the process that started it; test members do not",
  { skip, timeout: 60_000 },
  async () => {
    const { spawnSync } = await import("node:child_process");
    const { rmSync } = await import("node:fs");
    const mod = JSON.stringify(new URL("../../lab/etcd-process.js", import.meta.url).href);
    const run = (persistent: boolean): { endpoint: string; pid: number; base: string } => {
      const script = `
      import { startEtcd } from ${mod};
      const e = await startEtcd({ members: 1, persistent: ${persistent} });
      console.log(JSON.stringify({ endpoint: e.endpoints[0], pid: e.members[0].pid, base: e.members[0].dataDir.replace(/\\/m0$/, "") }));
      process.exit(0);`;
      const res = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
      assert.equal(res.status, 0, res.stderr);
      return JSON.parse(res.stdout) as { endpoint: string; pid: number; base: string };
    };
    const alive = (pid: number): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    const p = run(true);
    try {
      assert.ok(alive(p.pid), "persistent etcd died with its starter");
      const s = openEtcdStore({ endpoints: [p.endpoint] });
      await s.objects.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "outlives" } });
      await s.close();
    } finally {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        /* gone */
      }
      rmSync(p.base, { recursive: true, force: true });
    }
    const t = run(false);
    await waitFor("test etcd killed on exit", () => !alive(t.pid) || undefined, 5000);
    const { existsSync: exists } = await import("node:fs");
    assert.equal(exists(t.base), false, "test etcd's data dir was left behind");
  },
);
