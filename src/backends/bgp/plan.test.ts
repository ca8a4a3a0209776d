// What one node renders from the BGP objects (planBgp, a pure function): which sessions, to
// whom, with which flags; mesh on/off; the route-reflector role; what is left out and why.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cidrOrThrow, cidrHas } from "../../net/cidr.js";
import { parseIp, type IpFamily as Family } from "../../net/ip.js";
import { readBgpObjects, type BgpObjects } from "../../store/bgp-objects.js";
import type { StoredObject } from "../../store/types.js";
import { planBgp, type PlanNode } from "./plan.js";

const node = (name: string, addr: string, pods: string, labels?: Record<string, string>): PlanNode => ({
  name,
  underlay: new Map<Family, string>([[4, addr]]),
  pods: new Map([[4 as Family, cidrOrThrow(pods)]]),
  ...(labels ? { labels } : {}),
});
const n1 = node("n1", "10.200.0.2", "10.244.1.0/24", { rack: "r1" });
const n2 = node("n2", "10.200.0.3", "10.244.2.0/24", { rack: "r1" });
const n3 = node("n3", "10.200.0.4", "10.244.3.0/24", { rack: "r2" });
const far = node("n9", "10.9.0.9", "10.244.9.0/24");
const UNDERLAY = cidrOrThrow("10.200.0.0/24");
const connected = (_f: Family, a: string) => cidrHas(UNDERLAY, parseIp(a)!);

const obj = (kind: string, name: string, spec: unknown): StoredObject =>
  ({
    apiVersion: "weft.dev/v1",
    kind,
    metadata: { name, uid: "", resourceVersion: "1", creationTimestamp: "" },
    spec,
  }) as StoredObject;
const objects = (config: unknown, peers: Record<string, unknown>): BgpObjects =>
  readBgpObjects(
    config === undefined ? undefined : obj("BGPConfiguration", "default", config),
    Object.entries(peers).map(([n, s]) => obj("BGPPeer", n, s)),
    { clusterCIDRs: ["10.244.0.0/16"], nodes: [] },
  );
const plan = (local: PlanNode, objs: BgpObjects, others = [n1, n2, n3].filter((n) => n !== local)) =>
  planBgp({ local, nodes: others, meshNodes: others, objects: objs, connected });

test("no objects: the mesh to every other node, no BGPPeer sessions, the cluster AS", () => {
  const p = plan(n1, objects(undefined, {}));
  assert.deepEqual(
    p.meshPeers.map((n) => n.name),
    ["n2", "n3"],
  );
  assert.deepEqual(p.sessions, []);
  assert.equal(p.local.asNumber, 64512);
  assert.deepEqual(p.problems, []);
});

test("mesh off, AS per rack: an eBGP session to the rack's ToR with password, BFD, GR; other racks' ToRs not", () => {
  const objs = objects(
    { nodeToNodeMesh: false, nodes: [{ node: "n1", asNumber: 65010, routerId: "10.0.0.1" }] },
    {
      "tor-r1": {
        nodeSelector: "rack=r1",
        peerAddress: "10.200.0.254",
        asNumber: 65001,
        password: "s3cret",
        bfd: true,
      },
      "tor-r2": { nodeSelector: "rack=r2", peerAddress: "10.201.0.254", asNumber: 65002 },
    },
  );
  const p = plan(n1, objs);
  assert.deepEqual(p.meshPeers, []);
  assert.equal(p.local.asNumber, 65010);
  assert.equal(p.local.routerId, "10.0.0.1");
  assert.equal(p.sessions.length, 1);
  const s = p.sessions[0];
  assert.equal(s.name, "peer_10_200_0_254");
  assert.equal(s.neighborAs, 65001);
  assert.equal(s.password, "s3cret");
  assert.equal(s.bfd, true);
  assert.equal(s.gracefulRestart, true);
  assert.equal(s.multihop, false);
  assert.equal(s.passive, false);
  assert.deepEqual(p.sessionPeers.get("peer_10_200_0_254"), { peer: "tor-r1", address: "10.200.0.254" });
  // n3 (rack r2) is selected by tor-r2, whose router is not on its subnet: left out, said why.
  const p3 = plan(n3, objs);
  assert.deepEqual(p3.sessions, []);
  assert.match(p3.problems.join(), /BGPPeer tor-r2: 10\.201\.0\.254 is not on one of this node's underlay subnets/);
});

test("peerSelector: sessions on both ends; routeReflectorClient on the node side; the mesh skips those peers", () => {
  const objs = objects(
    {},
    { rr: { node: "n1", peerSelector: "kubernetes.io/hostname in (n2,n3)", routeReflectorClient: true } },
  );
  const a = plan(n1, objs);
  assert.deepEqual(
    a.sessions.map((s) => [s.name, s.rrClient, s.passive]),
    [
      ["node_10_200_0_3", true, false],
      ["node_10_200_0_4", true, false],
    ],
  );
  assert.deepEqual(a.meshPeers, [], "n2 and n3 are BGPPeer sessions, not mesh ones");
  const b = plan(n2, objs);
  assert.deepEqual(
    b.sessions.map((s) => [s.name, s.rrClient, s.passive]),
    [["node_10_200_0_2", false, true]],
  );
  assert.deepEqual(
    b.meshPeers.map((n) => n.name),
    ["n3"],
    "the mesh stays on between n2 and n3",
  );
});

test("routeReflectorClusterId: the node's in-cluster peers become rr clients with its cluster id; not toward another reflector", () => {
  const objs = objects(
    {
      nodeToNodeMesh: false,
      nodes: [
        { node: "n1", routeReflectorClusterId: "10.255.0.1" },
        { node: "n3", routeReflectorClusterId: "10.255.0.1" },
      ],
    },
    { rrs: { peerSelector: "kubernetes.io/hostname in (n1,n3)" } },
  );
  const a = plan(n1, objs);
  assert.equal(a.rrClusterId, "10.255.0.1");
  assert.deepEqual(a.sessions.map((s) => [s.name, s.rrClient]).sort(), [
    ["node_10_200_0_3", true],
    ["node_10_200_0_4", false],
  ]);
  assert.equal(plan(n2, objs).rrClusterId, undefined);
});

test("an rr client must be iBGP; a peer across subnets goes multihop; two peers to one router: the first wins", () => {
  const ebgp = objects(
    { nodes: [{ node: "n2", asNumber: 65002 }] },
    { rr: { node: "n1", peerSelector: "rack=r1", routeReflectorClient: true } },
  );
  const a = plan(n1, ebgp);
  assert.deepEqual(
    a.sessions.map((s) => [s.name, s.rrClient, s.neighborAs]),
    [["node_10_200_0_3", false, 65002]],
  );
  assert.match(a.problems.join(), /node n2 \(AS 65002\) cannot be an rr client/);
  const multi = plan(n1, objects({}, { x: { node: "n1", peerSelector: "kubernetes.io/hostname=n9" } }), [n2, far]);
  assert.equal(multi.sessions[0].multihop, true);
  const dup = plan(
    n1,
    objects(
      {},
      { a: { peerAddress: "10.200.0.254", asNumber: 65001 }, b: { peerAddress: "10.200.0.254", asNumber: 65009 } },
    ),
  );
  assert.deepEqual(
    dup.sessions.map((s) => s.neighborAs),
    [65001],
  );
  assert.match(dup.problems.join(), /BGPPeer b: 10\.200\.0\.254 already has a session \(a\)/);
});

test("a bad object is left out with its reason (no password in it); announce settings pass through", () => {
  const objs = objects(
    { announce: { podCIDRs: false, prefixes: ["192.0.2.0/24"] } },
    { bad: { peerAddress: "10.244.1.9", asNumber: 65001, password: "pw-xyz" } },
  );
  const p = plan(n1, objs);
  assert.equal(p.announce.podCIDRs, false);
  assert.equal(p.announce.prefixes.length, 1);
  assert.match(p.problems.join(), /BGPPeer bad: spec\.peerAddress: 10\.244\.1\.9 is inside the cluster CIDR/);
  assert.doesNotMatch(p.problems.join(), /pw-xyz/);
});
