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
import type { NodeInfo } from "../types.js";

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

test("local: a write by another process reaches a watcher, and the data survives reopening", { timeout: 60_000 }, async () => {
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
    const added = await waitFor("cross-process added event", () => seen.events.find((e) => e.type === "added" && e.object.name === "other-proc"));
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
});
