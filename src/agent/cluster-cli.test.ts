// `weft cluster init`, `weft status` and the agent's start-up errors, through the CLI, against a
// real etcd and a real single-host agent with its local store.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runStatus } from "../kernel/exec.js";
import type { ClusterStatus } from "../cli/status.js";
import { startEtcd, type EtcdCluster } from "../lab/etcd-process.js";
import { startTestAgent } from "../testlib/agent.js";
import { createNetns, removeAllNetns } from "../testlib/netns.js";
import { AGENT_CLI } from "../testlib/agent-cluster.js";

const weft = (...args: string[]) => runStatus([process.execPath, AGENT_CLI, ...args]);

describe("weft cluster init and the agent against a real etcd", () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd({ members: 1 });
  });
  after(async () => {
    await etcd?.stop();
    await removeAllNetns();
  });

  test("an agent on an uninitialized cluster exits 1 and says to run weft cluster init", async () => {
    const ns = await createNetns("node");
    const dir = mkdtempSync(join(tmpdir(), "weft-noinit-"));
    const sock = join(dir, "etcd.sock");
    const bridge = spawn("socat", [`UNIX-LISTEN:${sock},fork`, `TCP:127.0.0.1:${new URL(etcd.endpoints[0]).port}`], {
      stdio: "ignore",
    });
    try {
      for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
      const r = await runStatus([
        "nsenter",
        `--net=${ns.path}`,
        "--",
        process.execPath,
        AGENT_CLI,
        "agent",
        "--node",
        "n1",
        "--store",
        "etcd",
        "--etcd-endpoints",
        `unix://${sock}`,
        "--state-dir",
        join(dir, "state"),
        "--socket",
        join(dir, "a.sock"),
        "--underlay-address",
        "192.0.2.1",
      ]);
      assert.equal(r.code, 1, r.stderr);
      const last = r.stderr.trim().split("\n").pop()!;
      assert.match(last, /^weft: .*not initialized: run `weft cluster init --cluster-cidr/);
    } finally {
      bridge.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("cluster init writes the settings once; the same again is a no-op, different ones an error", async () => {
    const ep = ["--store", "etcd", "--etcd-endpoints", etcd.endpoints[0]];
    const bad = await weft("cluster", "init", ...ep, "--cluster-cidr", "10.98.0.0/16", "--backend", "carrier-pigeon");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--backend carrier-pigeon: choose one of vxlan, host-gw, vxlan-direct/);
    const first = await weft(
      "cluster",
      "init",
      ...ep,
      "--cluster-cidr",
      "10.98.0.0/16,fd98::/48",
      "--backend",
      "vxlan",
      "--node-prefix-v4",
      "26",
      "-o",
      "json",
    );
    assert.equal(first.code, 0, first.stderr);
    const j = JSON.parse(first.stdout) as {
      created: boolean;
      settings: { clusterCIDRs: string[]; backend: string; nodeSubnetPrefix: { v4: number; v6: number } };
    };
    assert.deepEqual(
      [j.created, j.settings.clusterCIDRs, j.settings.backend, j.settings.nodeSubnetPrefix],
      [true, ["10.98.0.0/16", "fd98::/48"], "vxlan", { v4: 26, v6: 64 }],
    );
    const again = await weft(
      "cluster",
      "init",
      ...ep,
      "--cluster-cidr",
      "10.98.0.0/16,fd98::/48",
      "--backend",
      "vxlan",
      "--node-prefix-v4",
      "26",
    );
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already initialized with these settings/);
    const other = await weft("cluster", "init", ...ep, "--cluster-cidr", "10.99.0.0/16", "--backend", "host-gw");
    assert.equal(other.code, 1);
    assert.equal(other.stderr.trim().split("\n").length, 1);
    const st = await weft("status", ...ep, "-o", "json");
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout) as ClusterStatus;
    assert.deepEqual([s.backend, s.nodes, s.cluster.clusterCIDRs], ["vxlan", [], ["10.98.0.0/16", "fd98::/48"]]);
  });
});

test("single host: the agent registers its node in the local store; weft status shows it with its pods", async () => {
  const host = await createNetns("host");
  const agent = await startTestAgent({ netns: host.path, podCidr: "10.68.0.0/24", node: "single-1" });
  try {
    const pod = await createNetns("pod");
    const r = await agent.request({
      op: "add",
      network: "weft",
      containerId: "c1",
      netns: pod.path,
      ifname: "eth0",
      args: { K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "web" },
    });
    assert.ok(r.ok, JSON.stringify(r));
    const deadline = Date.now() + 10_000;
    let s: ClusterStatus;
    for (;;) {
      const st = await weft("status", "--store", "local", "--state-dir", agent.stateDir, "-o", "json");
      assert.equal(st.code, 0, st.stderr);
      s = JSON.parse(st.stdout) as ClusterStatus;
      if (s.nodes[0]?.agent?.wiredPods === 1 || Date.now() > deadline) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.deepEqual(
      s.nodes.map((n) => [n.name, n.ready, n.podCIDRs, n.agent?.wiredPods]),
      [["single-1", true, ["10.68.0.0/24"], 1]],
    );
    // A restart on another --pod-cidr is refused with what to do.
    await agent.kill("SIGTERM");
    const other = await runStatus([
      "nsenter",
      `--net=${host.path}`,
      "--",
      process.execPath,
      AGENT_CLI,
      "agent",
      "--node",
      "single-1",
      "--store",
      "local",
      "--state-dir",
      agent.stateDir,
      "--socket",
      agent.socket,
      "--pod-cidr",
      "10.69.0.0/24",
    ]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /set up for pod CIDR 10\.68\.0\.0\/24, not 10\.69\.0\.0\/24/);
  } finally {
    await agent.cleanup();
    await removeAllNetns();
  }
});
