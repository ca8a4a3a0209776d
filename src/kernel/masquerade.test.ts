// The masquerade table on the real kernel, in namespaces this test makes: a "pod" behind a
// "node" that routes to an "outside" namespace (standing in for the internet, which has no route
// back to the pod CIDR). The outside server reports the source it sees.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createNetns, type TestNetns } from "../testlib/netns.js";
import { peerAddrSeenBy, startPeerAddrServer, type PeerAddrServer } from "../testlib/peer-addr.js";
import { listMasquerade, removeMasquerade, renderMasquerade, syncMasquerade } from "./masquerade.js";
import { InvalidKernelInput } from "./validate.js";

describe("masquerade table", () => {
  let pod: TestNetns;
  let node: TestNetns;
  let out: TestNetns;
  let server: PeerAddrServer;
  let server6: PeerAddrServer;
  const spec = { clusterCIDRs: ["10.96.0.0/16", "fd00:96::/48"] };
  before(async () => {
    pod = await createNetns("mpod");
    node = await createNetns("mnode");
    out = await createNetns("mout");
    await node.exec(["ip", "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", pod.name]);
    await node.exec(["ip", "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", out.name]);
    await node.exec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    const b = (ns: TestNetns, lines: string[]) => ns.exec(["ip", "-batch", "-"], { input: lines.join("\n") + "\n" });
    await b(node, [
      "addr add 10.96.0.1/24 dev vpod",
      "addr add fd00:96::1/64 dev vpod nodad",
      "link set vpod up",
      "addr add 10.250.0.1/24 dev vout",
      "addr add fd00:250::1/64 dev vout nodad",
      "link set vout up",
      "route add 10.96.9.9/32 via 10.250.0.2",
    ]);
    await b(pod, [
      "addr add 10.96.0.5/24 dev eth0",
      "addr add fd00:96::5/64 dev eth0 nodad",
      "link set eth0 up",
      "route add default via 10.96.0.1",
      "route add default via fd00:96::1",
    ]);
    // The outside routes the pod's subnet back (so an unmasqueraded source shows), and holds an
    // address inside the cluster CIDR, to which the pod's source is never masqueraded.
    await b(out, [
      "addr add 10.250.0.2/24 dev eth0",
      "addr add fd00:250::2/64 dev eth0 nodad",
      "addr add 10.96.9.9/32 dev lo",
      "link set eth0 up",
      "route add 10.96.0.0/24 via 10.250.0.1",
    ]);
    server = await startPeerAddrServer(out.path, "0.0.0.0", 7000);
    server6 = await startPeerAddrServer(out.path, "::", 7006);
  });
  after(async () => {
    await server?.stop();
    await server6?.stop();
    for (const ns of [pod, node, out]) await ns?.remove();
  });

  test("renders one table for both families; bad input is refused before nft", () => {
    const s = renderMasquerade(spec);
    assert.match(s, /^table inet weft_nat\ndelete table inet weft_nat\n/);
    assert.match(s, /ip saddr 10\.96\.0\.0\/16 ip daddr != \{ 10\.96\.0\.0\/16, 224\.0\.0\.0\/4 \} masquerade/);
    assert.match(s, /ip6 saddr fd00:96::\/48 ip6 daddr != \{ fd00:96::\/48, ff00::\/8 \} masquerade/);
    assert.throws(() => renderMasquerade({ clusterCIDRs: ["10.96.0.1/16"] }), InvalidKernelInput);
    assert.throws(() => renderMasquerade({ clusterCIDRs: ['10.0.0.0/8" ; flush ruleset'] }), InvalidKernelInput);
    assert.throws(() => renderMasquerade({ clusterCIDRs: [] }), InvalidKernelInput);
    assert.throws(() => renderMasquerade({ clusterCIDRs: ["10.0.0.0/8", "10.1.0.0/16"] }), InvalidKernelInput);
  });

  test("without the table the outside sees the pod's address; with it, the node's (IPv4 and IPv6)", async () => {
    assert.equal(await peerAddrSeenBy(pod.path, "10.250.0.2", 7000), "10.96.0.5");
    assert.equal(await syncMasquerade(spec, { netns: node.path }), true);
    assert.equal(await peerAddrSeenBy(pod.path, "10.250.0.2", 7000), "10.250.0.1");
    assert.equal(await peerAddrSeenBy(pod.path, "fd00:250::2", 7006), "fd00:250::1");
    // Destination inside the cluster CIDR: the pod's own address arrives.
    assert.equal(await peerAddrSeenBy(pod.path, "10.96.9.9", 7000), "10.96.0.5");
  });

  test("an unchanged sync writes nothing; other CIDRs replace the table; remove deletes it", async () => {
    assert.equal(await syncMasquerade(spec, { netns: node.path }), false);
    const handles = () => node.exec(["nft", "-a", "list", "table", "inet", "weft_nat"]);
    const first = await handles();
    assert.equal(await syncMasquerade(spec, { netns: node.path }), false);
    assert.equal(await handles(), first, "the table is untouched (same handles)");
    assert.equal(await syncMasquerade({ clusterCIDRs: ["10.96.0.0/12"] }, { netns: node.path }), true);
    const now = (await listMasquerade({ netns: node.path }))!;
    assert.match(now, /10\.96\.0\.0\/12/);
    assert.doesNotMatch(now, /ip6 saddr/);
    assert.equal(await removeMasquerade({ netns: node.path }), true);
    assert.equal(await listMasquerade({ netns: node.path }), null);
    assert.equal(await removeMasquerade({ netns: node.path }), false);
    assert.equal(await peerAddrSeenBy(pod.path, "10.250.0.2", 7000), "10.96.0.5");
  });
});
