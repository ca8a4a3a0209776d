// Agents restarted the way a DaemonSet's rolling update restarts them (SIGTERM, down for a while,
// a new process on the same node), one node after the other, over a real kube-apiserver
// (--store kubernetes, as the DaemonSet runs): new TCP connections between pods on the two nodes,
// opened every 50 ms in both directions, never fail, and nothing in either node's kernel changes
// (the VTEP keeps its ifindex and MAC; routes, neighbours and FDB entries stay as they were).
// A restart that outlasts the lease TTL is the case a rolling update on a busy node meets: the old
// agent is gone and the new one is still being started.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../kernel/exec.js";
import { kubeApiserverBinary } from "../lab/apiserver-process.js";
import { snapshot } from "../backends/testing/topology.js";
import { startCluster, waitFor, type TestCluster, type TestPod } from "../testlib/agent-cluster.js";
import { ACCEPTOR, describeWindows, PROBER, proberArgs, type ProbeResult } from "../testlib/prober.js";

const TTL = 2;
const PORT = 8080;
const INTERVAL_MS = 50;
// Generous: a probe asserts that the connection is made, not how fast (a busy 2-core CI machine).
const PROBE_TIMEOUT_MS = 5000;

/** The VTEP's identity: a recreated device has a new ifindex (and, if built wrong, a new MAC). */
async function vtep(netns: string): Promise<{ ifindex: number; mac: string }> {
  const [l] = JSON.parse(await run(["ip", "-j", "link", "show", "type", "vxlan"], { netns })) as Array<{
    ifindex: number;
    address: string;
  }>;
  assert.ok(l, `no vxlan device in ${netns}`);
  return { ifindex: l.ifindex, mac: l.address };
}

describe(
  "rolling restart of the agents (--store kubernetes, vxlan): new connections between nodes never fail",
  {
    skip: existsSync(kubeApiserverBinary())
      ? false
      : `${kubeApiserverBinary()} is missing (bash scripts/kube-apiserver.sh builds it)`,
    timeout: 240_000,
  },
  () => {
    let c: TestCluster;
    const tmp = mkdtempSync(join(tmpdir(), "wt-rr-"));
    const children = new Set<ChildProcess>();
    const inPod = (pod: TestPod, script: string, args: string[]): ChildProcess => {
      const ch = spawn("nsenter", [`--net=${pod.ns.path}`, "--", process.execPath, "-e", script, ...args], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      children.add(ch);
      return ch;
    };

    before(async () => {
      c = await startCluster({
        settings: { clusterCIDRs: ["10.95.0.0/16"], backend: "vxlan" },
        subnets: [0, 0],
        store: "kubernetes",
        leaseTtl: TTL,
      });
    });
    after(async () => {
      writeFileSync(join(tmp, "stop"), "");
      for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill("SIGKILL");
      await c?.destroy();
      rmSync(tmp, { recursive: true, force: true });
    });

    test("SIGTERM, down longer than the lease TTL, start again; one node after the other", async () => {
      const a = (await c.addPod(0, { namespace: "default", name: "rr-a" })).pod;
      const b = (await c.addPod(1, { namespace: "default", name: "rr-b" })).pod;
      assert.ok(a && b, "both pods wired");
      const pods = [a, b];
      for (const p of pods) inPod(p, ACCEPTOR, [String(PORT)]);
      const stop = join(tmp, "stop");
      const probers = pods.map((p, k) => {
        const files = { ready: join(tmp, `${k}.ready`), out: join(tmp, `${k}.out`) };
        const target = `${pods[1 - k].ips[0]}:${PORT}`;
        const ch = inPod(
          p,
          PROBER,
          proberArgs([target], {
            intervalMs: INTERVAL_MS,
            timeoutMs: PROBE_TIMEOUT_MS,
            ready: files.ready,
            stop,
            out: files.out,
          }),
        );
        const done = new Promise<void>((r) => ch.once("exit", () => r()));
        return { from: `node${k}`, ...files, done };
      });
      for (const pr of probers)
        await waitFor(`the prober on ${pr.from} connecting`, async () => existsSync(pr.ready), 30_000);
      const before = await Promise.all(
        c.topo.nodes.map(async (n) => ({ snap: await snapshot(n.netns), vtep: await vtep(n.netns) })),
      );

      // What the kernel saw meanwhile, for the failure message.
      const monitors = c.topo.nodes.map((n) => {
        let out = "";
        const ch = spawn("ip", ["-n", n.netns.replace("/run/netns/", ""), "-ts", "monitor", "link", "route", "neigh"], {
          stdio: ["ignore", "pipe", "ignore"],
        });
        children.add(ch);
        ch.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
        return { node: n.name, out: () => out };
      });

      const t0 = Date.now();
      for (const agent of c.agents) {
        const killedAt = Date.now();
        await agent.kill("SIGTERM");
        assert.ok(
          agent.lines().some((l) => l.msg === "node lease handed over: it stays live this long for the next agent"),
          `${agent.node.name} handed its lease over: ${agent.logs().slice(-600)}`,
        );
        // Down past the lease's TTL (counted from the kill: the last renewal was before it).
        await waitFor(
          "the old agent's lease TTL to pass",
          async () => Date.now() > killedAt + TTL * 1000 + 1500,
          30_000,
        );
        await agent.start();
      }
      // Probes through both new agents.
      const after = Date.now();
      await waitFor("a second of probes after the restarts", async () => Date.now() > after + 1000, 10_000);
      writeFileSync(stop, "");
      await Promise.all(probers.map((pr) => pr.done));
      const results = probers.map((pr) => JSON.parse(readFileSync(pr.out, "utf8")) as ProbeResult);
      const windows = results.flatMap((r, k) => describeWindows(probers[k].from, r, t0));
      const events = monitors.map((m) => `${m.node} kernel events:\n${m.out()}`).join("\n");
      for (const [k, r] of results.entries()) {
        assert.equal(r.error, undefined, `prober on ${probers[k].from}: ${r.error}`);
        assert.ok(r.ok > 20, `prober on ${probers[k].from}: ${r.ok} probes succeeded`);
      }
      assert.deepEqual(
        results.map((r) => r.failed),
        [0, 0],
        `failed new connections (${results.map((r) => r.sent).join(" + ")} sent): ${windows.join("; ")}\n${events}`,
      );
      // Nothing in either node's kernel changed: same VTEP device and MAC, same routes, neighbours, FDB.
      for (const [i, n] of c.topo.nodes.entries()) {
        assert.deepEqual(await vtep(n.netns), before[i].vtep, `${n.name}: the VTEP was recreated`);
        assert.equal(await snapshot(n.netns), before[i].snap, `${n.name}: kernel state changed over the restarts`);
      }
    });
  },
);
