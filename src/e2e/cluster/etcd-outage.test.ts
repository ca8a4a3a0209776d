// The store failing under a running cluster (3 etcd members, 3 nodes, vxlan), checked through
// bin/weft: one member lost -> the cluster still works (new pods run and connect); every member
// lost -> existing pods keep their connectivity, a new pod cannot be wired (CNI ADD fails with
// code 11, "try again later") and, once etcd is back (`lab up` repairs), that pod runs without any
// agent being restarted.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isAlive } from "../../lab/procs.js";
import { ClusterLab, matrixKeys, skipReason, sleep, unconnected } from "./fixture.js";

const skip = skipReason();
const UP = ["--nodes", "3", "--backend", "vxlan", "--etcd-members", "3"];
const PODS = [
  { name: "a", node: "n1" },
  { name: "b", node: "n2" },
  { name: "c", node: "n3" },
];

describe("etcd with 3 members under a 3-node vxlan lab", { skip, timeout: 300_000 }, () => {
  const lab = new ClusterLab();

  before(async () => {
    await lab.up(UP);
    await lab.applyPods(PODS);
    await lab.waitRunning(PODS.map((p) => `default/${p.name}`));
  });
  after(async () => {
    await lab.down();
  });

  test("one member killed: a new pod becomes Running and is connected", async () => {
    const members = lab.state().etcd;
    assert.equal(members.length, 3);
    // m1: the first endpoint in every client's list (CLI, kubelet, agents), so clients must fail over.
    process.kill(members[0].proc!.pid, "SIGKILL");
    await sleep(500);
    await lab.applyPods([{ name: "d", node: "n2" }]);
    await lab.waitRunning(["default/d"], 60_000);
    const m = await lab.matrix(["--port", "80"]);
    assert.deepEqual(matrixKeys(m.matrix).from, ["default/a", "default/b", "default/c", "default/d"]);
    assert.deepEqual(unconnected(m.matrix), []);
  });

  test("all members down: existing pods stay connected, a new pod fails CNI ADD with code 11, and runs once etcd is back", async () => {
    const st = lab.state();
    const agentsBefore = st.nodes.map((n) => n.agent!.pid);
    const kubelet = st.kubelet!.pid;
    // The kubelet must learn of the new pod before the store goes away (as a real kubelet has its
    // pods before a control-plane outage): pause it, create the pod, take etcd down, resume it.
    // Its watch then delivers the pod from the socket buffer and it runs CNI ADD with etcd down.
    process.kill(kubelet, "SIGSTOP");
    try {
      await lab.applyPods([{ name: "e", node: "n3" }]);
      await sleep(1500);
      for (const m of st.etcd) if (m.proc && isAlive(m.proc)) process.kill(m.proc.pid, "SIGKILL");
    } finally {
      process.kill(kubelet, "SIGCONT");
    }
    const downAt = Date.now();

    // The kubelet's log shows the plugin's error for e: code 11.
    let failure: string | undefined;
    for (let until = Date.now() + 30_000; !failure && Date.now() < until; await sleep(500)) {
      failure = lab
        .kubeletLog()
        .split("\n")
        .find((l) => l.includes("default/e") && /CNI ADD failed/.test(l));
    }
    assert.ok(failure, `no failed CNI ADD for default/e in the kubelet log:\n${lab.kubeletLog().slice(-2000)}`);
    assert.match(failure, /"code":\s*11\b/, `CNI ADD error for default/e is not code 11: ${failure}`);
    const rec = (
      JSON.parse(readFileSync(join(lab.dir, "kubelet", "pods.json"), "utf8")) as {
        pods: Record<string, { phase: string }>;
      }
    ).pods["default/e"];
    assert.notEqual(rec?.phase, "Running", "e is not Running while etcd is down");
    const get = await lab.weft(["get", "pods", "-A"]);
    assert.notEqual(get.code, 0, "get pods fails while the store is down");
    assert.ok(get.stderr.trim().split("\n").length <= 3, `a short error, not a stack trace: ${get.stderr}`);

    // Existing pods keep their connectivity, also after their agents' lease TTL has passed.
    const keys = ["default/a", "default/b", "default/c", "default/d"];
    let m = await lab.matrix(["--port", "80"]);
    assert.deepEqual(matrixKeys(m.matrix).from, keys, "e is not in the matrix (not Running)");
    assert.deepEqual(unconnected(m.matrix), [], "right after etcd went down");
    const ttl = 15;
    await sleep(Math.max(0, downAt + (ttl + 3) * 1000 - Date.now()));
    m = await lab.matrix(["--port", "80"]);
    assert.deepEqual(unconnected(m.matrix), [], `${ttl + 3} s into the outage`);
    m = await lab.matrix(["--port", "53", "--protocol", "UDP"]);
    assert.deepEqual(unconnected(m.matrix), [], `UDP ${ttl + 3} s into the outage`);

    // etcd back: the pod becomes Running by the kubelet's own retries, no agent restarted.
    await lab.up(UP);
    await lab.waitRunning(["default/e"], 90_000);
    assert.deepEqual(
      lab.state().nodes.map((n) => n.agent!.pid),
      agentsBefore,
      "no agent was restarted",
    );
    for (const n of lab.state().nodes) assert.ok(n.agent && isAlive(n.agent), `${n.name}'s agent still runs`);
    m = await lab.matrix(["--port", "80"]);
    assert.deepEqual(matrixKeys(m.matrix).from, [...keys, "default/e"]);
    assert.deepEqual(unconnected(m.matrix), []);
    const nodes = await lab.nodes();
    for (const n of nodes)
      assert.equal(
        n.status?.conditions?.find((x) => x.type === "Ready")?.status,
        "True",
        `${n.metadata.name} Ready again`,
      );
  });
});
