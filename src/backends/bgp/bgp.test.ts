// The bgp backend on the real kernel: BIRD per node namespace, routes learnt over the mesh.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, test } from "node:test";
import { birdPaths, findBird, stopBird } from "../../kernel/bird.js";
import { run } from "../../kernel/exec.js";
import type { BackendOptions } from "../types.js";
import { assertAllOk, backendSuite, podAddr, startCluster, withTopology, type Cluster } from "../testing/suite.js";
import { reaches, type TopoNode } from "../testing/topology.js";
import { BgpBackend } from "./backend.js";

const ROOT = mkdtempSync(join(tmpdir(), "weft-bgp-test-"));
const dirs = new Set<string>();
/** The agent's state dir for a node namespace (one per node, kept across "agent restarts"). */
const stateDirOf = (netns: string | undefined): string => {
  const d = join(ROOT, basename(netns ?? "self"));
  dirs.add(d);
  return d;
};
const create = (o: BackendOptions) => new BgpBackend({ ...o, stateDir: stateDirOf(o.kernel?.netns) });

// Every BIRD a test started ends with the file, by the PID its own PID file names.
after(async () => {
  for (const d of dirs) await stopBird(birdPaths(join(d, "bird"))).catch(() => null);
  rmSync(ROOT, { recursive: true, force: true });
});

// The case suite every backend runs; BIRD installs the routes a moment after the sync.
backendSuite({ title: "bgp", create, podMtu: 1500, routesBy: "daemon" });

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function birdRoutes(n: TopoNode): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of ["-4", "-6"]) {
    const rs = JSON.parse((await run(["ip", "-j", f, "route", "show", "proto", "bird"], { netns: n.netns })) || "[]");
    for (const r of rs as { dst: string; gateway?: string }[]) out.set(r.dst, r.gateway ?? "");
  }
  return out;
}

/** Waits until every node's kernel has every other node's pod subnets, proto bird, via that node. */
async function converged(c: Cluster, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const missing: string[] = [];
    for (const a of c.topo.nodes) {
      const have = await birdRoutes(a);
      for (const b of c.topo.nodes) {
        if (a === b) continue;
        for (const [fam, cidr] of Object.entries(b.podCIDRs)) {
          const via = fam === "ipv4" ? b.underlay.ipv4 : b.underlay.ipv6;
          if (cidr && have.get(cidr) !== via)
            missing.push(`${a.name}: ${cidr} via ${via} (have ${have.get(cidr) ?? "none"})`);
        }
      }
    }
    if (missing.length === 0) return;
    if (Date.now() > until) assert.fail(`routes missing after ${timeoutMs} ms: ${missing.join("; ")}`);
    await sleep(100);
  }
}

async function matrix(c: Cluster, families: (4 | 6)[]): Promise<void> {
  for (const from of c.topo.nodes)
    for (const to of c.topo.nodes)
      if (from !== to)
        for (const f of families)
          assert.ok(await reaches(from.pod.netns, podAddr(to, f)), `${from.name} pod -> ${to.name} pod over IPv${f}`);
}

for (const families of [[4], [4, 6]] as (4 | 6)[][]) {
  test(`bgp: 3 nodes, ${families.length === 2 ? "dual-stack" : "IPv4"}: every node learns every other node's pod subnet (proto bird, via that node), the agent writes no route, all pairs connect`, () =>
    withTopology({ subnets: [0, 0, 0], podFamilies: families }, async (topo) => {
      const c = await startCluster(topo, create);
      assertAllOk(await c.syncAll());
      for (const m of c.members) {
        assert.deepEqual(m.log.writes, [], `${m.node.name}: the backend itself wrote nothing to the kernel`);
        assert.equal(m.setup.podMtu, 1500);
      }
      await converged(c);
      // No weft (proto 230) routes at all: BIRD installs them.
      for (const n of topo.nodes)
        assert.equal((await run(["ip", "route", "show", "proto", "230"], { netns: n.netns })).trim(), "");
      await matrix(c, families);
    }));
}

test("bgp: a restarted agent adopts the running BIRD (same PID), changes nothing and writes no config; a peer change reloads it", () =>
  withTopology({ subnets: [0, 0, 0], podFamilies: [4] }, async (topo) => {
    const c = await startCluster(topo, create);
    assertAllOk(await c.syncAll(c.peers.slice(0, 2)));
    const m = c.members[0];
    const paths = birdPaths(join(stateDirOf(m.node.netns), "bird"));
    const pid = await findBird(paths);
    assert.ok(pid !== null);
    m.backend = create({ kernel: { netns: m.node.netns } });
    const s = await m.backend.setup(m.node.local);
    const r = await m.backend.syncPeers(c.peers.slice(0, 2));
    assert.deepEqual([...s.changes, ...r.changes], []);
    assert.equal(await findBird(paths), pid, "BIRD was not restarted");
    // The third node joins: a reload of the same BIRD.
    const r2 = await c.syncAll(c.peers);
    assert.deepEqual(
      r2[0].changes.map((ch) => [ch.action, ch.object]),
      [["replace", "daemon"]],
    );
    assert.equal(await findBird(paths), pid);
    await converged(c);
  }));

test("bgp: teardown stops BIRD by its PID, removes its files and every route it installed", () =>
  withTopology({ subnets: [0, 0], podFamilies: [4, 6] }, async (topo) => {
    const c = await startCluster(topo, create);
    assertAllOk(await c.syncAll());
    await converged(c);
    const [a] = c.members;
    const paths = birdPaths(join(stateDirOf(a.node.netns), "bird"));
    const pid = await findBird(paths);
    assert.ok(pid !== null);
    // A fresh object, as an agent switching backends would make it.
    await create({ kernel: { netns: a.node.netns } }).teardown();
    assert.equal(existsSync(`/proc/${pid}/cmdline`) && (await findBird(paths)) !== null, false, "BIRD still runs");
    assert.equal(existsSync(paths.dir), false, "BIRD's files remain");
    assert.deepEqual([...(await birdRoutes(a.node))], []);
  }));

/** Pings every 10 ms from a pod; resolves with [sent, received] once stopped. */
function probe(fromPodNetns: string, to: string): { stop: () => Promise<{ sent: number; received: number }> } {
  const child = spawn("nsenter", [`--net=${fromPodNetns}`, "--", "busybox", "ping", "-i", "0.01", to], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  const done = new Promise<void>((r) => child.on("close", () => r()));
  return {
    stop: async () => {
      child.kill("SIGINT");
      await done;
      const m = /(\d+) packets transmitted, (\d+) packets received/.exec(out);
      assert.ok(m, `ping summary missing: ${out.slice(-300)}`);
      return { sent: Number(m[1]), received: Number(m[2]) };
    },
  };
}

test("bgp: BIRD killed -9 on one node and started again by the next sync (graceful restart, persist): no probe packet lost", () =>
  withTopology({ subnets: [0, 0], podFamilies: [4] }, async (topo) => {
    const c = await startCluster(topo, create);
    assertAllOk(await c.syncAll());
    await converged(c);
    const [a, b] = c.members;
    const paths = birdPaths(join(stateDirOf(a.node.netns), "bird"));
    const old = await findBird(paths);
    assert.ok(old !== null);
    const p = probe(a.node.pod.netns, podAddr(b.node, 4));
    await sleep(500);
    process.kill(old, "SIGKILL");
    await sleep(1000);
    // Both kernels still have the routes (persist here, graceful restart on the peer).
    assert.ok((await birdRoutes(a.node)).size > 0 && (await birdRoutes(b.node)).size > 0);
    const r = await a.backend.syncPeers(c.peers);
    assert.match(r.changes.map((ch) => ch.detail).join(), /graceful-restart recovery/);
    const pid = await findBird(paths);
    assert.ok(pid !== null && pid !== old);
    // The session comes back; routes must have stayed throughout.
    const until = Date.now() + 30_000;
    while (!/Established/.test(await run(["birdc", "-s", paths.socket, "show", "protocols"])) && Date.now() < until)
      await sleep(100);
    await sleep(1000);
    await converged(c);
    const { sent, received } = await p.stop();
    console.log(`# BIRD kill -9 + restart: ${sent} sent, ${received} received`);
    assert.ok(sent > 100, `only ${sent} probes sent`);
    assert.equal(sent - received, 0, `${sent - received} of ${sent} lost`);
  }));
