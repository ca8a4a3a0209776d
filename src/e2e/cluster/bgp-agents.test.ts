// The bgp backend under real agents (the agent-cluster testlib: etcd, three node namespaces,
// agents resyncing every second): every agent killed -9 at the same moment and started again, while
// a pod on n0 pings a pod on n1 every 10 ms. BIRD is never restarted (same PIDs), every node keeps
// every peer's pod route throughout, and not one probe is lost (Calico's calico#7144: several
// nodes restarting at once left routes unpublished for minutes).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { test } from "node:test";
import { nodeRoutes, startCluster, waitFor, type TestCluster } from "../../testlib/agent-cluster.js";

/** PIDs of the bird processes whose network namespace is this one. */
function birdsIn(netnsPath: string): number[] {
  const ino = statSync(netnsPath).ino;
  const out: number[] = [];
  for (const d of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      if (readFileSync(`/proc/${d}/comm`, "utf8").trim() !== "bird") continue;
      if (readlinkSync(`/proc/${d}/ns/net`) === `net:[${ino}]`) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Every node routes every other node's pod CIDR, proto bird, via that node's address. */
async function meshRoutes(c: TestCluster): Promise<string[]> {
  const nodes = await c.store.listNodes();
  const missing: string[] = [];
  for (const t of c.topo.nodes) {
    const have = await nodeRoutes(t.netns);
    for (const n of nodes.filter((x) => x.name !== t.name))
      for (const cidr of n.podCIDRs.filter((x) => !x.includes(":"))) {
        const r = have.find((x) => x.dst === cidr);
        if (!r || r.protocol !== "bird" || r.gateway !== n.addresses.find((a) => !a.includes(":")))
          missing.push(`${t.name}: ${cidr} (${JSON.stringify(r ?? null)})`);
      }
  }
  return missing;
}

test(
  "bgp: all three agents killed -9 at once and restarted: BIRD untouched, every route stays, 0 probes lost",
  { timeout: 180_000 },
  async () => {
    const c = await startCluster({
      settings: { clusterCIDRs: ["10.244.0.0/16"], backend: "bgp" },
      subnets: [0, 0, 0],
      // A restart shorter than the lease: the nodes stay in the store (a node whose lease runs out
      // is gone, and its routes with it, by design).
      leaseTtl: 15,
    });
    let started: number[] = [];
    try {
      await waitFor("the BGP mesh to route every pod CIDR", async () => (await meshRoutes(c)).length === 0, 30_000);
      const a = await c.addPod(0);
      const b = await c.addPod(1);
      assert.ok(a.pod && b.pod, JSON.stringify([a.res, b.res]));
      const birds = c.topo.nodes.map((n) => birdsIn(n.netns));
      assert.ok(
        birds.every((p) => p.length === 1),
        `one BIRD per node: ${JSON.stringify(birds)}`,
      );
      started = birds.flat();

      const ping = spawn(
        "nsenter",
        [`--net=${a.pod.ns.path}`, "--", "busybox", "ping", "-i", "0.01", "-c", "1000", b.pod.ips[0]],
        {
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "";
      ping.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
      const pinged = new Promise<void>((r) => ping.on("close", () => r()));
      await new Promise((r) => setTimeout(r, 1000));
      await Promise.all(c.agents.map((x) => x.kill("SIGKILL")));
      // With every agent gone, the routes are still there (BIRD and the kernel hold them).
      assert.deepEqual(await meshRoutes(c), [], "routes while no agent runs");
      await Promise.all(c.agents.map((x) => x.start()));
      await waitFor(
        "every agent ready again",
        async () => c.agents.every((x) => x.lines().some((l) => l.msg === "agent ready")),
        60_000,
      );
      assert.deepEqual(await meshRoutes(c), [], "routes after the restarts");
      await pinged;
      const m = /(\d+) packets transmitted, (\d+) packets received/.exec(out);
      assert.ok(m, out);
      console.log(`# all agents kill -9 + restart: ${Number(m[1]) - Number(m[2])} of ${m[1]} probes lost`);
      assert.equal(Number(m[1]) - Number(m[2]), 0);
      assert.deepEqual(
        c.topo.nodes.map((n) => birdsIn(n.netns)),
        birds,
        "the restarted agents adopted the running BIRDs",
      );
    } finally {
      await c.destroy();
    }
    // destroy() ended each BIRD by its PID file.
    const running = started.filter((pid) => {
      try {
        const st = readFileSync(`/proc/${pid}/stat`, "utf8");
        return !/^[ZX]$/.test(st.slice(st.lastIndexOf(")") + 2).split(" ")[0]);
      } catch {
        return false;
      }
    });
    assert.deepEqual(running, [], "BIRD still runs after destroy()");
  },
);
