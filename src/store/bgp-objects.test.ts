// The BGP objects' checks: every rule of /work/notes/bgp-contract.md, each error naming the field.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  bgpContextProblems,
  checkBGPConfiguration,
  checkBGPPeer,
  describeBgpErrors,
  maskBgpSecrets,
  peerSelectsNode,
  readBgpObjects,
  type BgpClusterConfig,
  type BgpPeerConfig,
} from "./bgp-objects.js";
import type { NodeInfo, StoredObject } from "./types.js";

const peer = (spec: unknown, name = "tor-r1") => checkBGPPeer({ metadata: { name }, spec });
const config = (spec: unknown, name = "default") => checkBGPConfiguration({ metadata: { name }, spec });
const errorsOf = (r: { ok: boolean; errors?: { path: string; message: string }[] }): string =>
  r.ok ? "" : (r.errors ?? []).map((e) => `${e.path}: ${e.message}`).join("; ");

test("a BGPConfiguration: defaults, and every field checked with its path", () => {
  const d = config(undefined);
  assert.ok(d.ok);
  assert.equal(d.value.asNumber, 64512);
  assert.equal(d.value.nodeToNodeMesh, true);
  assert.equal(d.value.announcePodCIDRs, true);
  assert.deepEqual(d.value.bfd, { intervalMs: 100, multiplier: 3 });
  assert.equal(d.value.gracefulRestartSeconds, 120);
  const full = config({
    asNumber: 65000,
    nodeToNodeMesh: false,
    announce: { podCIDRs: false, prefixes: ["192.0.2.0/24", "2001:db8:1::/48"] },
    bfd: { intervalMs: 300, multiplier: 5 },
    gracefulRestartSeconds: 60,
    nodes: [{ node: "n1", asNumber: 65010, routerId: "10.0.0.1", routeReflectorClusterId: "10.255.0.1" }],
  });
  assert.ok(full.ok, errorsOf(full));
  assert.deepEqual(full.value.nodes.get("n1"), {
    asNumber: 65010,
    routerId: "10.0.0.1",
    routeReflectorClusterId: "10.255.0.1",
  });
  const bad: Array<[unknown, RegExp]> = [
    [{ asNumber: 0 }, /spec\.asNumber: 0 is not an AS number \(1\.\.4294967295\)/],
    [{ asNumber: 4294967296 }, /spec\.asNumber: 4294967296 is not an AS number/],
    [{ asNumber: "64512" }, /spec\.asNumber: "64512" is not an AS number/],
    [{ nodeToNodeMesh: "no" }, /spec\.nodeToNodeMesh: "no" is not true or false/],
    [{ announce: { prefixes: ["192.0.2.1/24"] } }, /spec\.announce\.prefixes\[0\]: .*192\.0\.2\.0\/24/],
    [{ announce: { prefixes: ["nope"] } }, /spec\.announce\.prefixes\[0\]/],
    [
      { announce: { prefixes: ["192.0.2.0/24", "192.0.2.128/25"] } },
      /spec\.announce\.prefixes\[1\]: 192\.0\.2\.128\/25 overlaps 192\.0\.2\.0\/24 \(spec\.announce\.prefixes\[0\]\)/,
    ],
    [{ bfd: { intervalMs: 5 } }, /spec\.bfd\.intervalMs: 5 is out of range: an integer 10\.\.60000 ms/],
    [{ bfd: { multiplier: 256 } }, /spec\.bfd\.multiplier: 256 is out of range/],
    [{ gracefulRestartSeconds: 5000 }, /spec\.gracefulRestartSeconds: 5000 is out of range: an integer 1\.\.4095 s/],
    [{ nodes: [{ asNumber: 1 }] }, /spec\.nodes\[0\]\.node: Required value/],
    [{ nodes: [{ node: "N_1" }] }, /spec\.nodes\[0\]\.node: "N_1" is not a node name/],
    [{ nodes: [{ node: "n1" }, { node: "n1" }] }, /spec\.nodes\[1\]\.node: "n1" is listed twice/],
    [{ nodes: [{ node: "n1", routerId: "fd00::1" }] }, /spec\.nodes\[0\]\.routerId: "fd00::1" is not an IPv4 address/],
    [{ nodes: [{ node: "n1", routeReflectorClusterId: "x" }] }, /spec\.nodes\[0\]\.routeReflectorClusterId/],
    [{ mesh: true }, /spec\.mesh: unknown field/],
  ];
  for (const [spec, re] of bad) assert.match(errorsOf(config(spec)), re, JSON.stringify(spec));
  assert.match(
    errorsOf(config({}, "other")),
    /metadata\.name: "other": a cluster has one BGPConfiguration and it is named "default"/,
  );
});

test("a BGPPeer: exclusive fields, addresses, selectors, defaults", () => {
  const ok = peer({ nodeSelector: "rack=r1", peerAddress: "10.1.0.1", asNumber: 65001, password: "s3cret", bfd: true });
  assert.ok(ok.ok, errorsOf(ok));
  assert.deepEqual(ok.value.peer, { kind: "external", address: "10.1.0.1", asNumber: 65001 });
  assert.equal(ok.value.gracefulRestart, true);
  assert.equal(ok.value.routeReflectorClient, false);
  assert.equal(ok.value.bfd, true);
  const rr = peer({ node: "n1", peerSelector: "kubernetes.io/hostname in (n2,n3)", routeReflectorClient: true });
  assert.ok(rr.ok, errorsOf(rr));
  assert.equal(rr.value.peer.kind, "nodes");
  assert.ok(peer({ peerAddress: "2001:db8::1", asNumber: 4294967295 }).ok);
  const bad: Array<[unknown, RegExp]> = [
    [
      { peerAddress: "10.1.0.1", asNumber: 4294967296 },
      /^spec\.asNumber: 4294967296 is not an AS number \(1\.\.4294967295\)$/,
    ],
    [
      { node: "n1", nodeSelector: "a=b", peerAddress: "10.1.0.1", asNumber: 1 },
      /spec\.nodeSelector: spec\.node and spec\.nodeSelector exclude each other/,
    ],
    [{ peerAddress: "10.1.0.1", asNumber: 1, peerSelector: "a=b" }, /spec\.peerSelector: .*excludes spec\.peerAddress/],
    [{ node: "n1" }, /^spec: Required value: give spec\.peerAddress and spec\.asNumber/],
    [{ peerAddress: "10.1.0.1" }, /spec\.asNumber: Required value/],
    [{ asNumber: 65001 }, /spec\.peerAddress: Required value/],
    [{ peerAddress: "10.1.0.300", asNumber: 1 }, /spec\.peerAddress: "10\.1\.0\.300" is not an IP address/],
    [{ peerAddress: "127.0.0.1", asNumber: 1 }, /spec\.peerAddress: 127\.0\.0\.1 cannot be a BGP peer/],
    [{ peerAddress: "fe80::1", asNumber: 1 }, /cannot be a BGP peer/],
    [{ peerAddress: "224.0.0.5", asNumber: 1 }, /cannot be a BGP peer/],
    [{ peerSelector: "a b" }, /spec\.peerSelector: "a b": cannot parse/],
    [{ nodeSelector: "", peerSelector: "a=b" }, /spec\.nodeSelector: "" is not a label selector/],
    [{ peerAddress: "10.1.0.1", asNumber: 1, bfd: "yes" }, /spec\.bfd: "yes" is not true or false/],
    [
      { peerAddress: "10.1.0.1", asNumber: 1, routeReflectorClient: true },
      /spec\.routeReflectorClient: only weft nodes/,
    ],
    [{ peerAddress: "10.1.0.1", asNumber: 1, peerAdress: "x" }, /spec\.peerAdress: unknown field/],
    [{ peerAddress: "10.1.0.1", asNumber: 1, password: 'a"b' }, /spec\.password: may hold printable ASCII/],
  ];
  for (const [spec, re] of bad) assert.match(errorsOf(peer(spec)), re, JSON.stringify(spec));
  // A bad password is never repeated in the message.
  assert.doesNotMatch(errorsOf(peer({ peerAddress: "10.1.0.1", asNumber: 1, password: 'sec"ret' })), /sec/);
  assert.equal(
    describeBgpErrors("BGPPeer", "tor-r1", [
      { path: "spec.asNumber", message: "4294967296 is not an AS number (1..4294967295)" },
    ]),
    "BGPPeer tor-r1: spec.asNumber: 4294967296 is not an AS number (1..4294967295)",
  );
});

const node = (name: string, addresses: string[], subnets?: string, labels?: Record<string, string>): NodeInfo => ({
  name,
  addresses,
  podCIDRs: [],
  backendData: subnets ? { backend: JSON.stringify({ as: 64512, underlaySubnets: subnets }) } : {},
  registeredAt: "",
  leaseTTLSeconds: 15,
  resourceVersion: "1",
  ...(labels ? { labels } : {}),
});

test("against the cluster: prefixes vs cluster CIDRs, peer address vs the selected nodes' subnets", () => {
  const ctx = {
    clusterCIDRs: ["10.244.0.0/16"],
    nodes: [
      node("n1", ["10.1.0.11"], "10.1.0.0/24", { rack: "r1" }),
      node("n2", ["10.2.0.12"], "10.2.0.0/24"),
      node("n3", ["10.1.0.13"]),
    ],
  };
  const cfg = config({ announce: { prefixes: ["10.244.128.0/20"] } });
  assert.ok(cfg.ok);
  assert.match(
    bgpContextProblems("BGPConfiguration", cfg.value, ctx)
      .map((e) => `${e.path}: ${e.message}`)
      .join(),
    /spec\.announce\.prefixes\[0\]: 10\.244\.128\.0\/20 overlaps the cluster CIDR 10\.244\.0\.0\/16/,
  );
  const p = (spec: unknown) => {
    const r = peer(spec);
    assert.ok(r.ok, errorsOf(r));
    return bgpContextProblems("BGPPeer", r.value, ctx)
      .map((e) => `${e.path}: ${e.message}`)
      .join("; ");
  };
  assert.equal(p({ nodeSelector: "rack=r1", peerAddress: "10.1.0.1", asNumber: 65001 }), "");
  assert.equal(
    p({ node: "n3", peerAddress: "10.9.0.1", asNumber: 65001 }),
    "",
    "n3 published no subnets: its agent checks",
  );
  assert.match(
    p({ peerAddress: "10.1.0.1", asNumber: 65001 }),
    /spec\.peerAddress: 10\.1\.0\.1 is not in an underlay subnet of node n2 \(10\.2\.0\.0\/24\)/,
  );
  assert.match(
    p({ node: "n1", peerAddress: "10.244.1.1", asNumber: 65001 }),
    /inside the cluster CIDR 10\.244\.0\.0\/16/,
  );
  assert.match(p({ node: "n1", peerAddress: "10.1.0.11", asNumber: 65001 }), /node n1's own address/);
  const sel = peer({ nodeSelector: "kubernetes.io/hostname=n2", peerSelector: "rack=r1" });
  assert.ok(sel.ok);
  assert.deepEqual(
    ctx.nodes.filter((n) => peerSelectsNode(sel.value, n)).map((n) => n.name),
    ["n2"],
  );
});

test("get's mask: a BGPPeer's password is *** in the spec and in the last-applied annotation", () => {
  const o = {
    kind: "BGPPeer",
    metadata: {
      name: "p",
      annotations: {
        "kubectl.kubernetes.io/last-applied-configuration": JSON.stringify({ spec: { password: "s3cret" } }),
      },
    },
    spec: { password: "s3cret" },
  };
  const m = maskBgpSecrets(o);
  assert.doesNotMatch(JSON.stringify(m), /s3cret/);
  assert.equal(m.spec.password, "***");
  assert.equal(o.spec.password, "s3cret", "the original is left alone");
});

test("the agent's reading: bad objects left out with the reason, defaults and the settings' AS otherwise", () => {
  const stored = (kind: string, name: string, spec: unknown): StoredObject =>
    ({
      apiVersion: "weft.dev/v1",
      kind,
      metadata: { name, uid: "", resourceVersion: "1", creationTimestamp: "" },
      spec,
    }) as StoredObject;
  const r = readBgpObjects(
    stored("BGPConfiguration", "default", { nodeToNodeMesh: false }),
    [
      stored("BGPPeer", "b", { peerAddress: "10.1.0.1", asNumber: 65001, password: "topsecret" }),
      stored("BGPPeer", "a", { peerAddress: "10.1.0.1", asNumber: 0, password: "topsecret" }),
    ],
    { clusterCIDRs: ["10.244.0.0/16"], nodes: [] },
    65100,
  );
  const cfg: BgpClusterConfig = r.config;
  assert.equal(cfg.asNumber, 65100, "no asNumber in the object: the cluster settings' AS");
  assert.equal(cfg.nodeToNodeMesh, false);
  assert.deepEqual(
    r.peers.map((p: BgpPeerConfig) => p.name),
    ["b"],
  );
  assert.equal(r.problems.length, 1);
  assert.match(r.problems[0], /^BGPPeer a: spec\.asNumber: 0 is not an AS number/);
  assert.doesNotMatch(r.problems.join(), /topsecret/);
});
