import assert from "node:assert/strict";
import { test } from "node:test";
import { run } from "../../kernel/exec.js";
import { assertAllOk, backendSuite, startCluster, stateFor, withTopology } from "../testing/suite.js";
import { reaches } from "../testing/topology.js";
import { release } from "node:os";
import { VxlanBackend } from "./backend.js";
import { kernelHasVxlanChecksumBug } from "./config.js";

backendSuite({ title: "vxlan over an IPv4 underlay", create: (o) => new VxlanBackend(o), podMtu: 1450 });
backendSuite({
  title: "vxlan over an IPv6 underlay",
  create: (o) => new VxlanBackend({ ...o, vxlan: { underlayFamily: 6 } }),
  podMtu: 1430,
});
backendSuite({
  title: "vxlan over an IPv4 underlay",
  create: (o) => new VxlanBackend(o),
  podMtu: 1450,
  routedUnderlay: true,
});

async function vtep(netns: string): Promise<Record<string, any>> {
  return JSON.parse(await run(["ip", "-j", "-d", "link", "show", "dev", "weft.1"], { netns }))[0];
}
const offload = async (netns: string): Promise<string | undefined> =>
  /tx-checksum-ip-generic: (\w+)/.exec(await run(["ethtool", "-k", "weft.1"], { netns }))?.[1];

test("vxlan: the VTEP is static (VNI 1, port 4789, no learning, no group), carries both VTEP addresses, tx checksum offload off only on kernels with the checksum bug", () =>
  withTopology({ subnets: [0, 0], podFamilies: [4, 6] }, async (topo) => {
    const c = await startCluster(topo, (o) => new VxlanBackend(o));
    assertAllOk(await c.syncAll());
    const [a, b] = topo.nodes;
    const l = await vtep(a.netns);
    const d = l.linkinfo.info_data;
    assert.equal(l.linkinfo.info_kind, "vxlan");
    assert.equal(d.id, 1);
    assert.equal(d.port, 4789);
    assert.equal(d.learning, false);
    assert.equal(d.local, a.underlay.ipv4);
    assert.equal(d.group ?? d.remote, undefined);
    assert.equal(l.mtu, 1450);
    assert.equal(l.address, c.members[0].setup.data.vtepMAC);
    const addrs =
      l.addr_info ??
      JSON.parse(await run(["ip", "-j", "addr", "show", "dev", "weft.1"], { netns: a.netns }))[0].addr_info;
    const global = addrs
      .filter((x: any) => x.scope === "global")
      .map((x: any) => `${x.local}/${x.prefixlen}`)
      .sort();
    assert.deepEqual(global, ["10.244.1.0/32", "fd00:244:1::/128"]);
    assert.equal(await offload(a.netns), kernelHasVxlanChecksumBug(release()) ? "off" : "on");
    // The peer's paths, flannel-style: FDB to its underlay, permanent neighbour, onlink route.
    const fdb = JSON.parse(await run(["bridge", "-j", "fdb", "show", "dev", "weft.1"], { netns: a.netns }));
    assert.deepEqual(
      fdb.map((e: any) => [e.mac, e.dst, e.state]),
      [[c.members[1].setup.data.vtepMAC, b.underlay.ipv4, "permanent"]],
    );
    const route = JSON.parse(await run(["ip", "-j", "route", "show", "10.244.2.0/24"], { netns: a.netns }))[0];
    assert.deepEqual([route.gateway, route.dev, route.flags], ["10.244.2.0", "weft.1", ["onlink"]]);
    const r6 = JSON.parse(await run(["ip", "-j", "-6", "route", "show", "fd00:244:2::/64"], { netns: a.netns }))[0];
    assert.deepEqual([r6.gateway, r6.dev, r6.flags], ["fd00:244:2::", "weft.1", ["onlink"]]);
  }));

test("vxlan: the kernel versions with the VXLAN checksum bug are those before 5.7", () => {
  assert.deepEqual(
    ["4.19.0-25-amd64", "5.4.0", "5.6.19", "5.7.0", "5.15.0-91-generic", "6.18.44-fc"].map(kernelHasVxlanChecksumBug),
    [true, true, true, false, false, false],
  );
});

test("vxlan: tx checksum offload follows the setting (forced on, then forced off), and an MTU override is used", () =>
  withTopology({ subnets: [0], podFamilies: [4] }, async (topo) => {
    const [a] = topo.nodes;
    const s = await new VxlanBackend({
      kernel: { netns: a.netns },
      mtu: 1400,
      vxlan: { disableTxChecksumOffload: false },
    }).setup(a.local);
    assert.equal(s.podMtu, 1400);
    assert.equal((await vtep(a.netns)).mtu, 1400);
    assert.equal(await offload(a.netns), "on");
    // Switching the setting back is applied to the existing device, which is kept.
    const s2 = await new VxlanBackend({ kernel: { netns: a.netns }, vxlan: { disableTxChecksumOffload: true } }).setup(
      a.local,
    );
    assert.equal(await offload(a.netns), "off");
    assert.ok(!s2.changes.some((ch) => ch.object === "link" && ch.action === "add"), JSON.stringify(s2.changes));
  }));

test("vxlan: a VTEP left with wrong settings (learning on, other port) is replaced", () =>
  withTopology({ subnets: [0], podFamilies: [4] }, async (topo) => {
    const [a] = topo.nodes;
    await run(
      [
        "ip",
        "link",
        "add",
        "weft.1",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "8472",
        "local",
        a.underlay.ipv4,
        "dev",
        "eth0",
      ],
      { netns: a.netns },
    );
    const s = await new VxlanBackend({ kernel: { netns: a.netns } }).setup(a.local);
    assert.ok(s.changes.some((ch) => ch.object === "link" && ch.action === "delete"));
    const d = (await vtep(a.netns)).linkinfo.info_data;
    assert.deepEqual([d.port, d.learning], [4789, false]);
  }));

test("vxlan: a peer without VXLAN data or with another VNI is reported, not wired", () =>
  withTopology({ subnets: [0, 0], podFamilies: [4] }, async (topo) => {
    const c = await startCluster(topo, (o) => new VxlanBackend(o));
    const r1 = await c.members[0].backend.syncPeers([{ ...c.peers[1], backendData: {} }]);
    assert.equal(r1.peers[0].ok, false);
    assert.match(r1.peers[0].errors[0], /no valid VXLAN data/);
    const r2 = await c.members[0].backend.syncPeers([
      { ...c.peers[1], backendData: { ...c.peers[1].backendData, vni: 7 } },
    ]);
    assert.match(r2.peers[0].errors[0], /VNI 7 differs/);
    const r3 = await c.members[0].backend.syncPeers([
      { ...c.peers[1], backendData: { ...c.peers[1].backendData, underlayFamily: 6 } },
    ]);
    assert.match(r3.peers[0].errors[0], /runs over IPv6, this node's over IPv4/);
    const r4 = await c.members[0].backend.syncPeers([
      { ...c.peers[1], backendData: { ...c.peers[1].backendData, vtepMAC: "01:00:5e:00:00:01" } },
    ]);
    assert.match(r4.peers[0].errors[0], /not a unicast MAC/);
    const routes = JSON.parse(
      await run(["ip", "-j", "route", "show", "10.244.2.0/24"], { netns: topo.nodes[0].netns }),
    );
    assert.deepEqual(routes, []);
  }));

test("vxlan: overlapping syncs run one after the other; the last peer list wins", () =>
  withTopology({ subnets: [0, 0, 0], podFamilies: [4] }, async (topo) => {
    const c = await startCluster(topo, (o) => new VxlanBackend(o));
    const [a, , gone] = topo.nodes;
    const b = c.members[0].backend;
    await Promise.all([b.syncPeers(c.peers), b.syncPeers(c.peers.filter((p) => p.name !== gone.name))]);
    assert.deepEqual(await stateFor(a, gone), []);
    assert.ok((await stateFor(a, topo.nodes[1])).length > 0);
  }));

test("vxlan: the tunnel's outer packets skip conntrack (the inner pod packets stay tracked), and teardown removes the exemption", () =>
  withTopology({ subnets: [0, 0], podFamilies: [4] }, async (topo) => {
    const c = await startCluster(topo, (o) => new VxlanBackend(o));
    assertAllOk(await c.syncAll());
    const [a, b] = topo.nodes;
    // Any table with a ct expression turns conntrack on in the namespace, as weft's policy table does.
    const ct =
      "table inet tpct {\n chain c {\n  type filter hook forward priority 0; policy accept;\n  ct state new counter\n }\n}\n";
    for (const n of topo.nodes) await run(["nft", "-f", "-"], { netns: n.netns, input: ct });
    const table = await run(["nft", "list", "table", "inet", "weft_vxlan"], { netns: a.netns });
    assert.match(table, /udp dport 4789 notrack/);
    assert.ok(await reaches(a.pod.netns, b.pod.ipv4!), "pod a cannot reach pod b over the tunnel");
    const flows = await run(["conntrack", "-L"], { netns: a.netns }).catch(() => "");
    assert.match(
      flows,
      new RegExp(`icmp .*src=${a.pod.ipv4!.replace(/\./g, "\\.")} dst=${b.pod.ipv4!.replace(/\./g, "\\.")}`),
    );
    assert.doesNotMatch(flows, /dport=4789/, `outer VXLAN packets were tracked:\n${flows}`);
    await c.members[0].backend.teardown();
    assert.equal(
      (await run(["nft", "list", "tables"], { netns: a.netns })).includes("weft_vxlan"),
      false,
      "teardown left the notrack table behind",
    );
  }));
