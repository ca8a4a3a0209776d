import assert from "node:assert/strict";
import { test } from "node:test";
import { run } from "../../kernel/exec.js";
import { assertAllOk, backendSuite, podAddr, startCluster, withTopology } from "../testing/suite.js";
import { reaches } from "../testing/topology.js";
import { VxlanDirectBackend } from "./backend.js";

backendSuite({ title: "vxlan-direct", create: (o) => new VxlanDirectBackend(o), podMtu: 1450 });
backendSuite({ title: "vxlan-direct", create: (o) => new VxlanDirectBackend(o), podMtu: 1450, routedUnderlay: true });

async function vtepTxPackets(netns: string): Promise<number> {
  return JSON.parse(await run(["ip", "-j", "-s", "link", "show", "dev", "weft.1"], { netns }))[0].stats64.tx.packets;
}

test("vxlan-direct: direct routes to same-subnet peers, VXLAN to a peer across a router; all pods reach each other", () =>
  withTopology({ subnets: [0, 0, 1], podFamilies: [4, 6] }, async (topo) => {
    const [a, b, far] = topo.nodes;
    const c = await startCluster(topo, (o) => new VxlanDirectBackend(o));
    const reports = await c.syncAll();
    assertAllOk(reports);
    const fromA = new Map(reports[0].peers.map((p) => [p.name, p.paths]));
    assert.deepEqual(fromA.get(b.name), { "10.244.2.0/24": "direct", "fd00:244:2::/64": "direct" });
    assert.deepEqual(fromA.get(far.name), { "10.244.3.0/24": "vxlan", "fd00:244:3::/64": "vxlan" });

    const direct = JSON.parse(await run(["ip", "-j", "route", "show", "10.244.2.0/24"], { netns: a.netns }))[0];
    assert.deepEqual([direct.gateway, direct.dev], [b.underlay.ipv4, "eth0"]);
    const tunnel = JSON.parse(await run(["ip", "-j", "route", "show", "10.244.3.0/24"], { netns: a.netns }))[0];
    assert.deepEqual([tunnel.gateway, tunnel.dev, tunnel.flags], ["10.244.3.0", "weft.1", ["onlink"]]);
    // Only the far peer has an FDB entry.
    const fdb = JSON.parse(await run(["bridge", "-j", "fdb", "show", "dev", "weft.1"], { netns: a.netns }));
    assert.deepEqual(
      fdb.map((e: { dst: string }) => e.dst),
      [far.underlay.ipv4],
    );

    for (const from of topo.nodes)
      for (const to of topo.nodes) {
        if (from === to) continue;
        for (const f of [4, 6] as const)
          assert.ok(await reaches(from.pod.netns, podAddr(to, f)), `${from.name} -> ${to.name} IPv${f}`);
      }
    // Traffic really takes those paths: the VTEP carries packets to the far peer only.
    const t0 = await vtepTxPackets(a.netns);
    assert.ok(await reaches(a.pod.netns, podAddr(b, 4)));
    assert.equal(await vtepTxPackets(a.netns), t0, "same-subnet traffic went through the VTEP");
    assert.ok(await reaches(a.pod.netns, podAddr(far, 4)));
    assert.ok((await vtepTxPackets(a.netns)) > t0, "cross-subnet traffic did not go through the VTEP");
  }));

test("vxlan-direct: a peer that moves behind the router switches from direct to VXLAN on the next sync", () =>
  withTopology({ subnets: [0, 0, 1], podFamilies: [4] }, async (topo) => {
    const [a, b, far] = topo.nodes;
    const c = await startCluster(topo, (o) => new VxlanDirectBackend(o));
    assertAllOk(await c.syncAll());
    // Pretend node1's lease now carries the far node's underlay address (a re-addressed node).
    const moved = c.peers.map((p) => (p.name === b.name ? { ...p, underlay: { ipv4: "10.201.0.9" } } : p));
    const r = await c.members[0].backend.syncPeers(moved);
    assert.deepEqual(r.peers.find((p) => p.name === b.name)?.paths, { "10.244.2.0/24": "vxlan" });
    assert.ok(
      r.changes.some((ch) => ch.object === "route" && ch.action === "replace" && ch.detail.includes("weft.1")),
      JSON.stringify(r.changes),
    );
    const fdb = JSON.parse(await run(["bridge", "-j", "fdb", "show", "dev", "weft.1"], { netns: a.netns }));
    assert.deepEqual(fdb.map((e: { dst: string }) => e.dst).sort(), ["10.201.0.9", far.underlay.ipv4].sort());
  }));
