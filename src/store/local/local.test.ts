// The shared store cases against the local (SQLite) store. Every client is its own SQLite
// connection to the same file, as separate agent/CLI processes would be.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { storeCases, trackingFixture, waitFor, collector } from "../cases.js";
import { openLocalStore } from "./index.js";
import type { NodeInfo, StoredObject } from "../types.js";

const root = mkdtempSync(join(tmpdir(), "weft-store-local-"));
const fixtures: Array<{ closeAll(): Promise<void> }> = [];
let n = 0;

storeCases({
  name: "local (SQLite)",
  fresh: async () => {
    const path = join(root, `c${n++}`, "store.db");
    const f = trackingFixture(() => openLocalStore({ path }));
    fixtures.push(f);
    return f;
  },
  teardown: async () => {
    await Promise.allSettled(fixtures.map((f) => f.closeAll()));
  },
});

after(() => rmSync(root, { recursive: true, force: true }));

test(
  "local: a write by another process reaches a watcher, and the data survives reopening",
  { timeout: 60_000 },
  async () => {
    const path = join(root, "xproc", "store.db");
    const store = openLocalStore({ path });
    try {
      await store.initCluster({ clusterCIDRs: ["10.244.0.0/16"], backend: "vxlan" });
      const seen = collector<NodeInfo>();
      const w = store.watchNodes(seen.listener);
      await w.ready;
      // A separate node process registers a node and exits without releasing it.
      const script = `
      import { openLocalStore } from ${JSON.stringify(new URL("./index.js", import.meta.url).href)};
      const s = openLocalStore({ path: ${JSON.stringify(path)} });
      const l = await s.registerNode({ name: "other-proc", addresses: ["192.0.2.9"] }, { ttlSeconds: 30 });
      console.log(l.node.podCIDRs[0]);
      await s.close();`;
      const res = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
      assert.equal(res.status, 0, res.stderr);
      const cidr = res.stdout.trim();
      const added = await waitFor("cross-process added event", () =>
        seen.events.find((e) => e.type === "added" && e.object.name === "other-proc"),
      );
      assert.deepEqual(added.object.podCIDRs, [cidr]);
      await w.close();
    } finally {
      await store.close();
    }
    const reopened = openLocalStore({ path });
    try {
      assert.equal((await reopened.getNode("other-proc"))?.podCIDRs.length, 1);
      assert.deepEqual((await reopened.getClusterSettings())?.clusterCIDRs, ["10.244.0.0/16"]);
    } finally {
      await reopened.close();
    }
  },
);

test(
  "local: a watcher that fell behind trimmed history re-lists and still ends up right",
  { timeout: 60_000 },
  async () => {
    const path = join(root, "compact", "store.db");
    // The watcher's connection looks for other connections' writes only every 1.5 s; the writer's
    // connection keeps 2 events of history and trims every tick, so the watcher's position is gone.
    const watcherStore = openLocalStore({ path, pollIntervalMs: 1500 });
    const writer = openLocalStore({ path, historyLimit: 2, compactIntervalMs: 0 });
    try {
      const seen = collector<StoredObject>();
      await writer.objects.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "keep" } });
      await writer.objects.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "drop" } });
      const w = watcherStore.objects.watch("Namespace", seen.listener);
      await w.ready;
      assert.deepEqual(
        seen.events.map((e) => `${e.type}:${e.object.metadata.name}`),
        ["added:drop", "added:keep"],
      );
      await new Promise((r) => setTimeout(r, 200)); // let the watcher settle at the current revision
      await writer.objects.delete({ kind: "Namespace", name: "drop" });
      for (let i = 0; i < 6; i++)
        await writer.objects.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: `ns-${i}` } });
      await writer.objects.apply({
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name: "keep", labels: { changed: "yes" } },
      });
      const want = ["keep", ...Array.from({ length: 6 }, (_, i) => `ns-${i}`)].sort();
      const names = (): string[] => {
        const live = new Map<string, StoredObject>();
        for (const e of seen.events) {
          if (e.type === "removed") live.delete(e.object.metadata.name);
          else live.set(e.object.metadata.name, e.object);
        }
        return [...live.keys()].sort();
      };
      await waitFor(
        "watcher state matches the store",
        () => JSON.stringify(names()) === JSON.stringify(want) || undefined,
      );
      const keep = [...seen.events].reverse().find((e) => e.object.metadata.name === "keep");
      assert.equal(keep?.object.metadata.labels?.changed, "yes");
      await w.close();
    } finally {
      await watcherStore.close();
      await writer.close();
    }
  },
);

test(
  "local: an agent stalled past its TTL loses the lease, then re-registers by itself with the same subnet",
  { timeout: 60_000 },
  async () => {
    const path = join(root, "stall", "store.db");
    const store = openLocalStore({ path });
    try {
      await store.initCluster({ clusterCIDRs: ["10.244.0.0/16", "fd00:1::/48"], backend: "host-gw" });
      const lease = await store.registerNode(
        { name: "stalls", addresses: ["192.0.2.1"] },
        { ttlSeconds: 1, subnetGraceSeconds: 30 },
      );
      const before = lease.node.podCIDRs;
      const states: string[] = [];
      lease.onStateChange((s) => states.push(s.state));
      // Block the event loop for longer than the TTL: no renewals happen, the lease expires.
      const until = Date.now() + 2500;
      while (Date.now() < until) {
        /* stalled */
      }
      await waitFor("lost then restored", () => (states.join(",") === "lost,restored" ? true : undefined));
      assert.deepEqual(lease.node.podCIDRs, before);
      assert.deepEqual((await store.getNode("stalls"))?.podCIDRs, before);
    } finally {
      await store.close();
    }
  },
);
