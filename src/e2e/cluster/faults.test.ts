// Agent faults on a 3-node vxlan lab, as a user checks them through bin/weft:
// - kill -9 of a node's agent and its restart (`lab up` repairs): a TCP stream between pods on two
//   nodes keeps flowing, the node keeps its pod CIDR, pods keep their addresses;
// - a node's agent gone for good: after the lease TTL its routes and FDB entries leave every peer
//   and `get nodes` no longer shows it Ready.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ClusterLab, skipReason, sleep, unconnected, type NodeJson } from "./fixture.js";

const skip = skipReason();
const UP = ["--nodes", "3", "--backend", "vxlan"];
const PODS = [
  { name: "a", node: "n1" },
  { name: "b", node: "n2" },
  { name: "c", node: "n3" },
];
const KEYS = PODS.map((p) => `default/${p.name}`);

const podIPs = async (lab: ClusterLab): Promise<Record<string, string[]>> =>
  Object.fromEntries((await lab.pods()).map((p) => [p.metadata.name, (p.status?.podIPs ?? []).map((x) => x.ip)]));
const cidrsOf = (nodes: NodeJson[]): Record<string, string[]> =>
  Object.fromEntries(nodes.map((n) => [n.metadata.name, n.spec?.podCIDRs ?? []]));
const underlayOf = (n: NodeJson | undefined): string | undefined =>
  n?.status?.addresses?.find((a) => a.type === "InternalIP")?.address;

describe("agent faults on a 3-node vxlan lab", { skip, timeout: 240_000 }, () => {
  const lab = new ClusterLab();

  before(async () => {
    await lab.up(UP);
    await lab.applyPods(PODS);
    await lab.waitRunning(KEYS);
  });
  after(async () => {
    await lab.down();
  });

  test("kill -9 of n2's agent and restart: a TCP stream n1 -> n2 keeps flowing, same pod CIDR, same pod addresses", async () => {
    const cidrsBefore = cidrsOf(await lab.nodes());
    const ipsBefore = await podIPs(lab);
    const bIP = ipsBefore.b[0];
    const oldPid = lab.agentPid("n2");

    // iperf3 server in pod b (n2), one test then exit; client in pod a (n1), 12 s, rate-limited
    // so the stream does not starve the machine.
    const server = lab.spawnWeft(["lab", "exec", "default/b", "--", "iperf3", "-s", "-1", "-p", "5202"]);
    let listening = false;
    for (let i = 0; i < 50 && !listening; i++) {
      const ss = await lab.weft(["lab", "exec", "default/b", "--", "ss", "-Hltn", "sport = :5202"]);
      listening = ss.stdout.includes("5202");
      if (!listening) await sleep(200);
    }
    assert.ok(listening, "iperf3 server listens in pod b");
    const client = lab.spawnWeft([
      "lab",
      "exec",
      "default/a",
      "--",
      "iperf3",
      "-c",
      bIP,
      "-p",
      "5202",
      "-t",
      "12",
      "-b",
      "100M",
      "-J",
    ]);
    await sleep(2500);

    process.kill(oldPid, "SIGKILL");
    await sleep(1000);
    await lab.up(UP); // repairs: starts n2's agent again, with the command line it had
    const newPid = lab.agentPid("n2");
    assert.notEqual(newPid, oldPid, "lab up started a new agent on n2");

    const c = await client.done;
    assert.equal(c.code, 0, `iperf3 client exited ${c.code}: ${c.stdout.slice(-800)} ${c.stderr}`);
    const report = JSON.parse(c.stdout) as {
      error?: string;
      intervals: Array<{ sum: { bytes: number } }>;
      end: { sum_received?: { bytes: number } };
    };
    assert.equal(report.error, undefined, `iperf3: ${report.error}`);
    const zero = report.intervals.map((iv, i) => [i, iv.sum.bytes] as const).filter(([, b]) => b === 0);
    assert.deepEqual(zero, [], "every 1-second interval moved data (the stream never stalled for a whole second)");
    assert.ok((report.end.sum_received?.bytes ?? 0) > 0, "the server received the stream");
    const s = await server.done;
    assert.equal(s.code, 0, `iperf3 server: ${s.stderr}`);

    const nodes = await lab.nodes();
    assert.deepEqual(cidrsOf(nodes), cidrsBefore, "every node keeps its pod CIDR(s) across the restart");
    assert.equal(
      nodes.find((n) => n.metadata.name === "n2")?.status?.conditions?.find((x) => x.type === "Ready")?.status,
      "True",
    );
    assert.deepEqual(await podIPs(lab), ipsBefore, "pods keep their addresses");
    const m = await lab.matrix(["--port", "80"]);
    assert.deepEqual(unconnected(m.matrix), []);
  });

  test("n3's agent gone for good: after the lease TTL its routes and FDB entries leave n1 and n2, and it is not Ready", async () => {
    const nodes = await lab.nodes();
    const n3 = nodes.find((n) => n.metadata.name === "n3");
    const n3Cidr = n3?.spec?.podCIDRs?.[0];
    const n3Underlay = underlayOf(n3);
    assert.ok(n3Cidr && n3Underlay, "n3 is listed with a pod CIDR and an underlay address");
    const hasPath = async (node: string): Promise<{ route: boolean; fdb: boolean }> => ({
      route: (await lab.routes(node)).some((r) => r.dst === n3Cidr),
      fdb: (await lab.fdb(node)).some((f) => f.dst === n3Underlay),
    });
    // Before: the peers do have them (so the check below can fail).
    for (const peer of ["n1", "n2"])
      assert.deepEqual(await hasPath(peer), { route: true, fdb: true }, `${peer} has a route and an FDB entry for n3`);

    process.kill(lab.agentPid("n3"), "SIGKILL");
    const killedAt = Date.now();
    const ttl = Number(
      (await lab.weft(["get", "nodes", "-o", "json"])).stdout.match(/"weft.io\/lease-ttl-seconds":\s*"(\d+)"/)?.[1] ??
        15,
    );
    const until = killedAt + (ttl + 20) * 1000;
    let left: Record<string, { route: boolean; fdb: boolean }> = {};
    for (;;) {
      left = { n1: await hasPath("n1"), n2: await hasPath("n2") };
      if (Object.values(left).every((p) => !p.route && !p.fdb)) break;
      if (Date.now() > until) break;
      await sleep(1000);
    }
    assert.deepEqual(
      left,
      { n1: { route: false, fdb: false }, n2: { route: false, fdb: false } },
      `n3's paths still on its peers ${Math.round((Date.now() - killedAt) / 1000)} s after the kill (lease TTL ${ttl} s)\n${lab.agentLog("n1")}`,
    );

    const after = await lab.nodes();
    const gone = after.find((n) => n.metadata.name === "n3");
    const ready = gone?.status?.conditions?.find((x) => x.type === "Ready")?.status;
    assert.notEqual(ready, "True", `get nodes still shows n3 Ready: ${JSON.stringify(gone?.status)}`);
    for (const name of ["n1", "n2"]) {
      assert.equal(
        after.find((n) => n.metadata.name === name)?.status?.conditions?.find((x) => x.type === "Ready")?.status,
        "True",
        `${name} stays Ready`,
      );
    }
    // The survivors still reach each other.
    const ab = await lab.weft(["lab", "probe", "default/a", "default/b", "--port", "80", "-o", "json"]);
    assert.equal(ab.code, 0, ab.stdout + ab.stderr);
  });
});
