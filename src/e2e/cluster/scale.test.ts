// 20 agents starting together against one etcd each lease a distinct pod CIDR, as a user sees it in
// `get nodes -o json`, and every node gets a route to every other node's CIDR. No pods: kept cheap.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { labEtcdFlags } from "../../lab/etcd.js";
import { deleteNetns, ensureNode } from "../../lab/topology.js";
import { ClusterLab, inCidr, skipReason, sleep, WEFT_BIN, type NodeJson } from "./fixture.js";

const skip = skipReason();
const N = 20;

describe(`${N} agents starting at once`, { skip, timeout: 360_000 }, () => {
  const lab = new ClusterLab();
  let nodes: NodeJson[] = [];
  // The second wave: agents we start ourselves, all in the same instant, in our own namespaces.
  const tag = Math.random().toString(36).slice(2, 8);
  const extraDir = `/run/wt-xa-${tag}`;
  const extra = Array.from({ length: N }, (_, i) => ({
    name: `x${i + 1}`,
    netns: `wt-xa-${tag}-${i + 1}`,
    ipv4: `10.250.0.${101 + i}`,
  }));
  const extraProcs: ChildProcess[] = [];

  before(async () => {
    await lab.up(["--nodes", String(N), "--backend", "host-gw"]);
    nodes = await lab.nodes();
  });
  after(async () => {
    for (const p of extraProcs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    await sleep(200);
    for (const x of extra) await deleteNetns(x.netns);
    rmSync(extraDir, { recursive: true, force: true });
    await lab.down();
  });

  test(`get nodes -o json: ${N} Ready nodes with ${N} distinct pod CIDRs inside the cluster CIDR`, (t) => {
    // How close together the agents started (lab up starts them in one pass; the state's start
    // time is the kernel's, in clock ticks of 1/100 s).
    const starts = lab.state().nodes.map((n) => Number(n.agent?.start ?? NaN));
    t.diagnostic(
      `agent start spread: ${((Math.max(...starts) - Math.min(...starts)) / 100).toFixed(2)} s over ${N} agents`,
    );
    const names = nodes.map((n) => n.metadata.name).sort();
    assert.deepEqual(names, Array.from({ length: N }, (_, i) => `n${i + 1}`).sort());
    const cidrs = nodes.map((n) => n.spec?.podCIDRs?.[0] ?? "");
    assert.equal(new Set(cidrs).size, N, `pod CIDRs not distinct: ${cidrs.join(" ")}`);
    const prefixes = new Set(cidrs.map((c) => c.split("/")[1]));
    assert.equal(prefixes.size, 1, "one subnet size for every node, so distinct also means disjoint");
    for (const c of cidrs)
      assert.ok(inCidr(c.split("/")[0], "10.244.0.0/16"), `${c} inside the cluster CIDR 10.244.0.0/16`);
    for (const n of nodes)
      assert.equal(n.status?.conditions?.find((x) => x.type === "Ready")?.status, "True", `${n.metadata.name} Ready`);
    const underlay = nodes.map((n) => n.status?.addresses?.find((a) => a.type === "InternalIP")?.address);
    assert.equal(new Set(underlay).size, N, "distinct underlay addresses");
  });

  test("the first and the last node each route to all other nodes' pod CIDRs", async () => {
    for (const self of ["n1", `n${N}`]) {
      const want = nodes
        .filter((n) => n.metadata.name !== self)
        .map((n) => n.spec!.podCIDRs![0])
        .sort();
      let have: string[] = [];
      for (let until = Date.now() + 30_000; ; await sleep(1000)) {
        const dsts = new Set((await lab.routes(self)).map((r) => r.dst));
        have = want.filter((c) => dsts.has(c));
        if (have.length === want.length || Date.now() > until) break;
      }
      assert.deepEqual(have, want, `${self}: routes to the other ${N - 1} nodes`);
    }
  });

  test(`${N} more agents launched in the same instant (own namespaces on the lab underlay, one etcd) lease ${N} more distinct CIDRs`, async (t) => {
    const st = lab.state();
    for (const x of extra)
      await ensureNode({ ul: st.underlay.netns, node: x.name, netns: x.netns, ipv4: x.ipv4, gateway4: "10.250.0.1" });
    // `weft agent` as a node runs it (the contract's cluster command line), all spawned at once.
    const etcdFlags = labEtcdFlags(st);
    for (const x of extra) {
      const dir = join(extraDir, x.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const log = openSync(join(dir, "agent.log"), "a", 0o600);
      extraProcs.push(
        spawn(
          "nsenter",
          [
            `--net=/run/netns/${x.netns}`,
            "--",
            process.execPath,
            WEFT_BIN,
            "agent",
            "--node",
            x.name,
            "--store",
            "etcd",
            ...etcdFlags,
            "--state-dir",
            join(dir, "state"),
            "--socket",
            join(dir, "weft.sock"),
            "--underlay-address",
            x.ipv4,
          ],
          { stdio: ["ignore", log, log], env: { ...process.env, NODE_EXTRA_CA_CERTS: "" } },
        ),
      );
      closeSync(log);
    }
    const spawnedAt = Date.now();
    const want = new Set(extra.map((x) => x.name));
    let all: NodeJson[] = [];
    // Generous: 20 Node.js processes loading at once on 2 shared cores take a while.
    for (let until = Date.now() + 180_000; ; await sleep(1000)) {
      all = await lab.nodes();
      const ready = all.filter(
        (n) =>
          want.has(n.metadata.name) &&
          n.status?.conditions?.find((c) => c.type === "Ready")?.status === "True" &&
          n.spec?.podCIDRs?.length,
      );
      if (ready.length === N || Date.now() > until) break;
    }
    const retries = extra.map(
      (x) => (readFileSync(join(extraDir, x.name, "agent.log"), "utf8").match(/retrying/g) ?? []).length,
    );
    t.diagnostic(`second wave: ${retries.reduce((a, b) => a + b, 0)} "retrying" lines in the agents' logs`);
    const created = all
      .filter((n) => want.has(n.metadata.name))
      .map(
        (n) => (Date.parse((n.metadata as { creationTimestamp?: string }).creationTimestamp ?? "") - spawnedAt) / 1000,
      )
      .sort((a, b) => a - b);
    t.diagnostic(
      `second wave: Nodes registered ${created[0]?.toFixed(1)} .. ${created[created.length - 1]?.toFixed(1)} s after spawn; all Ready after ${((Date.now() - spawnedAt) / 1000).toFixed(1)} s`,
    );
    const dead = extraProcs.filter((p) => p.exitCode !== null);
    assert.deepEqual(
      dead.map((p) => p.exitCode),
      [],
      "no agent of the second wave exited",
    );
    assert.equal(
      all.length,
      2 * N,
      `get nodes lists ${all.length} nodes: ${all.map((n) => n.metadata.name).join(" ")}`,
    );
    const cidrs = all.map((n) => n.spec?.podCIDRs?.[0] ?? "");
    assert.equal(new Set(cidrs).size, 2 * N, `pod CIDRs not distinct: ${cidrs.join(" ")}`);
    for (const n of all)
      assert.equal(n.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", `${n.metadata.name} Ready`);
  });
});
