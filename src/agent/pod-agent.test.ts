// The agent as a DaemonSet runs it, end to end with real agents in node namespaces (real etcd, a
// real kube-apiserver where the test says so): egress masquerade seen from the far end, the health
// endpoints through a store outage, and NetworkPolicies from the Kubernetes API beside an etcd store.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { runStatus } from "../kernel/exec.js";
import { kubeApiserverBinary } from "../lab/apiserver-process.js";
import { openStore } from "../store/index.js";
import type { ClusterStore } from "../store/types.js";
import { startCluster, waitFor, type NodeAgent, type TestCluster, type TestPod } from "../testlib/agent-cluster.js";
import { createNetns, type TestNetns } from "../testlib/netns.js";
import { peerAddrSeenBy, startPeerAddrServer, type PeerAddrServer } from "../testlib/peer-addr.js";

/** A namespace standing in for the internet, on the cluster's underlay (br0 of the test topology). */
async function outside(c: TestCluster, clusterCidrs: string[]): Promise<TestNetns> {
  const underlay = c.topo.nodes[0].netns.replace(/-n0$/, "-u").replace("/run/netns/", "");
  const ns = await createNetns("inet");
  await ns.exec([
    "ip",
    "link",
    "add",
    "eth0",
    "type",
    "veth",
    "peer",
    "name",
    `o${ns.name.slice(-6)}`,
    "netns",
    underlay,
  ]);
  await runStatus(["ip", "-n", underlay, "link", "set", `o${ns.name.slice(-6)}`, "master", "br0", "up"]);
  const node0 = c.topo.nodes[0].underlay;
  const lines = [
    "addr add 10.200.0.250/24 dev eth0",
    "addr add fd00:200::fa/64 dev eth0 nodad",
    "link set eth0 up",
    // A route back to the pods through node0: without masquerade the pod's own address arrives,
    // so what the server reports decides the test.
    ...clusterCidrs.map((cidr) => `route add ${cidr} via ${cidr.includes(":") ? node0.ipv6 : node0.ipv4}`),
  ];
  await ns.exec(["ip", "-batch", "-"], { input: lines.join("\n") + "\n" });
  return ns;
}

/** The health port a node agent logged, and a GET of its endpoint from inside the node. */
const port = (a: NodeAgent) =>
  a.lines().find((l) => l.msg === "health endpoints on /healthz and /readyz")?.port as number | undefined;
const get = async (a: NodeAgent, path: string): Promise<{ code: number; body: string }> => {
  const r = await runStatus(["curl", "-s", "-m", "3", "-w", "\n%{http_code}", `http://127.0.0.1:${port(a)}${path}`], {
    netns: a.node.netns,
  });
  const lines = r.stdout.trimEnd().split("\n");
  return { code: Number(lines.pop()), body: lines.join("\n").trim() };
};

describe("egress masquerade on (the default): dual-stack vxlan, two nodes", () => {
  let c: TestCluster;
  let p0: TestPod;
  let p1: TestPod;
  let inet: TestNetns;
  const servers: PeerAddrServer[] = [];
  before(async () => {
    c = await startCluster({
      settings: { clusterCIDRs: ["10.97.0.0/16", "fd00:97::/48"], backend: "vxlan" },
      subnets: [0, 0],
      agentArgs: ["--health-port", "0"],
    });
    p0 = (await c.addPod(0)).pod!;
    p1 = (await c.addPod(1)).pod!;
    assert.ok(p0 && p1);
    inet = await outside(c, ["10.97.0.0/16", "fd00:97::/48"]);
    servers.push(await startPeerAddrServer(inet.path, "::", 8080));
    servers.push(await startPeerAddrServer(p1.ns.path, "::", 8081));
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await inet?.remove();
    await c?.destroy();
  });

  test("a pod reaching outside the cluster CIDRs shows up with its node's address (IPv4 and IPv6)", async () => {
    const [v4, v6] = [p0.ips.find((a) => !a.includes(":"))!, p0.ips.find((a) => a.includes(":"))];
    assert.ok(v4 && v6, `dual-stack pod: ${p0.ips.join(",")}`);
    assert.equal(await peerAddrSeenBy(p0.ns.path, "10.200.0.250", 8080), c.topo.nodes[0].underlay.ipv4);
    assert.equal(await peerAddrSeenBy(p0.ns.path, "fd00:200::fa", 8080), c.topo.nodes[0].underlay.ipv6);
    assert.equal(await peerAddrSeenBy(p1.ns.path, "10.200.0.250", 8080), c.topo.nodes[1].underlay.ipv4);
  });

  test("pod to pod across nodes keeps the pod's source address (IPv4 and IPv6)", async () => {
    const v4 = (p: TestPod) => p.ips.find((a) => !a.includes(":"))!;
    const v6 = (p: TestPod) => p.ips.find((a) => a.includes(":"))!;
    assert.equal(await peerAddrSeenBy(p0.ns.path, v4(p1), 8081), v4(p0));
    assert.equal(await peerAddrSeenBy(p0.ns.path, v6(p1), 8081), v6(p0));
  });

  test("a restarted agent adopts the table without rewriting it", async () => {
    const listed = () =>
      runStatus(["nft", "-a", "list", "table", "inet", "weft_nat"], { netns: c.agents[0].node.netns });
    const first = await listed();
    assert.equal(first.code, 0, first.stderr);
    await c.agents[0].kill("SIGKILL");
    await c.agents[0].start();
    assert.equal((await listed()).stdout, first.stdout, "same rules, same handles");
    const line = c.agents[0].lines().find((l) => String(l.msg).startsWith("egress masquerade on"));
    assert.equal(line?.changed, false);
  });

  test("/healthz and /readyz: 200 when ready; /readyz 503 with the reason while the store is away and before joining", async () => {
    const [a0, a1] = c.agents;
    for (const a of c.agents) {
      assert.ok(port(a), "the bound port is logged");
      assert.deepEqual(await get(a, "/healthz"), { code: 200, body: "ok" });
      assert.deepEqual(await get(a, "/readyz"), { code: 200, body: "ok" });
    }
    assert.equal((await get(a0, "/nope")).code, 404);

    await c.etcd.members[0].kill();
    let restarting: Promise<void> | undefined;
    try {
      await waitFor("node0's /readyz to fail", async () => (await get(a0, "/readyz")).code === 503, 30_000);
      assert.match((await get(a0, "/readyz")).body, /lease|store|unreachable/);
      assert.equal((await get(a0, "/healthz")).code, 200, "alive all the same: a restart would not help");
      // An agent started while the store is away serves its socket and health, and is not ready.
      await a1.kill("SIGTERM");
      restarting = a1.start();
      restarting.catch(() => undefined);
      await waitFor(
        "node1's health endpoint",
        async () => port(a1) !== undefined && (await get(a1, "/healthz")).code === 200,
      );
      const r = await get(a1, "/readyz");
      assert.equal(r.code, 503);
      assert.match(r.body, /not joined|joining/);
    } finally {
      await c.etcd.members[0].start();
    }
    await restarting;
    await waitFor(
      "both /readyz to answer 200 again",
      async () => (await Promise.all(c.agents.map((a) => get(a, "/readyz")))).every((r) => r.code === 200),
      30_000,
    );
  });
});

for (const [backend, cidr] of [
  ["host-gw", "10.86.0.0/16"],
  ["vxlan-direct", "10.87.0.0/16"],
] as const) {
  describe(`egress masquerade on: ${backend}, two nodes`, () => {
    let c: TestCluster;
    let inet: TestNetns;
    const servers: PeerAddrServer[] = [];
    before(async () => {
      c = await startCluster({ settings: { clusterCIDRs: [cidr], backend }, subnets: [0, 0] });
      inet = await outside(c, [cidr]);
      servers.push(await startPeerAddrServer(inet.path, "0.0.0.0", 8080));
    });
    after(async () => {
      for (const s of servers) await s.stop();
      await inet?.remove();
      await c?.destroy();
    });

    test("pod to pod across nodes keeps the pod's address; to the outside, the node's", async () => {
      const p0 = (await c.addPod(0)).pod!;
      const p1 = (await c.addPod(1)).pod!;
      servers.push(await startPeerAddrServer(p1.ns.path, "0.0.0.0", 8081));
      assert.equal(await peerAddrSeenBy(p0.ns.path, p1.ips[0], 8081), p0.ips[0]);
      assert.equal(await peerAddrSeenBy(p0.ns.path, "10.200.0.250", 8080), c.topo.nodes[0].underlay.ipv4);
    });
  });
}

describe("egress masquerade off (ipMasq false): host-gw", () => {
  let c: TestCluster;
  let inet: TestNetns;
  let server: PeerAddrServer | undefined;
  before(async () => {
    c = await startCluster({
      settings: { clusterCIDRs: ["10.98.0.0/16"], backend: "host-gw", ipMasq: false },
      subnets: [0, 0],
    });
    inet = await outside(c, ["10.98.0.0/16"]);
    server = await startPeerAddrServer(inet.path, "0.0.0.0", 8080);
  });
  after(async () => {
    await server?.stop();
    await inet?.remove();
    await c?.destroy();
  });

  test("the far end sees the pod's own address; no masquerade table on the node", async () => {
    const p0 = (await c.addPod(0)).pod!;
    assert.equal(await peerAddrSeenBy(p0.ns.path, "10.200.0.250", 8080), p0.ips[0]);
    const t = await runStatus(["nft", "list", "table", "inet", "weft_nat"], { netns: c.agents[0].node.netns });
    assert.notEqual(t.code, 0, "no weft_nat table");
  });
});

describe(
  "--store etcd with a Kubernetes API: NetworkPolicies come from the API server",
  {
    skip: existsSync(kubeApiserverBinary())
      ? false
      : `${kubeApiserverBinary()} is missing (bash scripts/kube-apiserver.sh builds it)`,
  },
  () => {
    let c: TestCluster;
    let kube: ClusterStore;
    before(async () => {
      c = await startCluster({
        settings: { clusterCIDRs: ["10.99.0.0/16"], backend: "vxlan" },
        subnets: [0, 0],
        kubeApi: true,
        agentArgs: ["--health-port", "0"],
      });
      kube = openStore({ kind: "kubernetes", kubeconfig: c.apiserver!.kubeconfig });
    });
    after(async () => {
      await kube?.close();
      await c?.destroy();
    });

    test("a NetworkPolicy created in the API server isolates a pod on an etcd-store agent", async () => {
      for (const a of c.agents) {
        const l = a.lines().find((x) => x.msg === "network policies, pods and namespaces come from here");
        assert.equal(l?.policySource, "kubernetes", JSON.stringify(l));
      }
      // The leases stay in etcd.
      assert.deepEqual(
        (await c.store.listNodes()).map((n) => n.name),
        ["node0", "node1"],
      );
      const o = kube.objects;
      await o.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "secure" } });
      const pod = (ns: string, name: string, node: string, labels: Record<string, string>) =>
        o.apply({
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name, namespace: ns, labels },
          spec: { nodeName: node, containers: [{ name: "c", image: "busybox" }] },
        });
      await pod("secure", "victim", "node0", { app: "v" });
      await pod("default", "client", "node1", { app: "c" });
      const victim = (await c.addPod(0, { namespace: "secure", name: "victim" })).pod!;
      const client = (await c.addPod(1, { namespace: "default", name: "client" })).pod!;
      assert.ok(victim && client);
      const server = await startPeerAddrServer(victim.ns.path, "0.0.0.0", 8082);
      try {
        assert.equal(
          await peerAddrSeenBy(client.ns.path, victim.ips[0], 8082),
          client.ips[0],
          "open before the policy",
        );
        await o.apply({
          apiVersion: "networking.k8s.io/v1",
          kind: "NetworkPolicy",
          metadata: { name: "deny-all", namespace: "secure" },
          spec: { podSelector: { matchLabels: { app: "v" } }, policyTypes: ["Ingress"] },
        });
        await waitFor(
          "the policy to isolate the victim",
          async () => (await peerAddrSeenBy(client.ns.path, victim.ips[0], 8082)) === null,
          30_000,
        );
        await o.delete({ kind: "NetworkPolicy", namespace: "secure", name: "deny-all" });
        await waitFor(
          "the victim to be reachable once the policy is gone",
          async () => (await peerAddrSeenBy(client.ns.path, victim.ips[0], 8082)) !== null,
          30_000,
        );
      } finally {
        await server.stop();
      }
      for (const a of c.agents) assert.deepEqual(await get(a, "/readyz"), { code: 200, body: "ok" });
    });
  },
);
