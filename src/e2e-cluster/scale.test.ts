// 20 agents starting together against one etcd each lease a distinct pod CIDR, as a user sees it in
// `get nodes -o json`, and every node gets a route to every other node's CIDR. No pods: kept cheap.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ClusterLab, inCidr, skipReason, sleep, type NodeJson } from "./fixture.js";

const skip = skipReason();
const N = 20;

describe(`${N} agents starting at once`, { skip, timeout: 240_000 }, () => {
  const lab = new ClusterLab();
  let nodes: NodeJson[] = [];

  before(async () => {
    await lab.up(["--nodes", String(N), "--backend", "host-gw"]);
    nodes = await lab.nodes();
  });
  after(async () => {
    await lab.down();
  });

  test(`get nodes -o json: ${N} Ready nodes with ${N} distinct pod CIDRs inside the cluster CIDR`, (t) => {
    // How close together the agents started (lab up starts them in one pass; the state's start
    // time is the kernel's, in clock ticks of 1/100 s).
    const starts = lab.state().nodes.map((n) => Number(n.agent?.start ?? NaN));
    t.diagnostic(`agent start spread: ${((Math.max(...starts) - Math.min(...starts)) / 100).toFixed(2)} s over ${N} agents`);
    const names = nodes.map((n) => n.metadata.name).sort();
    assert.deepEqual(names, Array.from({ length: N }, (_, i) => `n${i + 1}`).sort());
    const cidrs = nodes.map((n) => n.spec?.podCIDRs?.[0] ?? "");
    assert.equal(new Set(cidrs).size, N, `pod CIDRs not distinct: ${cidrs.join(" ")}`);
    const prefixes = new Set(cidrs.map((c) => c.split("/")[1]));
    assert.equal(prefixes.size, 1, "one subnet size for every node, so distinct also means disjoint");
    for (const c of cidrs) assert.ok(inCidr(c.split("/")[0], "10.244.0.0/16"), `${c} inside the cluster CIDR 10.244.0.0/16`);
    for (const n of nodes) assert.equal(n.status?.conditions?.find((x) => x.type === "Ready")?.status, "True", `${n.metadata.name} Ready`);
    const underlay = nodes.map((n) => n.status?.addresses?.find((a) => a.type === "InternalIP")?.address);
    assert.equal(new Set(underlay).size, N, "distinct underlay addresses");
  });

  test("the first and the last node each route to all other nodes' pod CIDRs", async () => {
    for (const self of ["n1", `n${N}`]) {
      const want = nodes.filter((n) => n.metadata.name !== self).map((n) => n.spec!.podCIDRs![0]).sort();
      let have: string[] = [];
      for (let until = Date.now() + 30_000; ; await sleep(1000)) {
        const dsts = new Set((await lab.routes(self)).map((r) => r.dst));
        have = want.filter((c) => dsts.has(c));
        if (have.length === want.length || Date.now() > until) break;
      }
      assert.deepEqual(have, want, `${self}: routes to the other ${N - 1} nodes`);
    }
  });
});
