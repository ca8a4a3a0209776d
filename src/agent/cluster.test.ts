// Cluster mode end to end: real etcd, node namespaces on a test underlay, one real agent per node
// (`weft agent --store etcd`), pods added over the agents' sockets, checked as a user would: ping,
// a TCP stream, routes in the node namespaces, `weft status -o json`, packets counted by receivers.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { callAgent } from "../agent-api/client.js";
import type { AgentResponse } from "../agent-api/schema.js";
import { collectStatus, type ClusterStatus } from "../cli/status.js";
import { kubeApiserverBinary } from "../lab/apiserver-process.js";
import { ping } from "../testlib/netns.js";
import { nodeRoutes, startCluster, waitFor, type TestCluster, type TestPod } from "../testlib/agent-cluster.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function reaches(from: TestPod, to: string): Promise<boolean> {
  for (let i = 0; i < 3; i++) if (await ping(from.ns, to)) return true;
  return false;
}

async function status(c: TestCluster): Promise<ClusterStatus> {
  const r = await c.cli(["status", "-o", "json", "--store", "etcd", "--etcd-endpoints", c.etcd.endpoints[0]]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ClusterStatus;
}

/** A node script run inside a namespace (nsenter execs node in place: the PID is the script's). */
function nodeIn(netns: string, script: string, args: string[] = []): ChildProcess & { out: () => string } {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const c = spawn(
    "nsenter",
    [`--net=${netns}`, "--", process.execPath, "--input-type=module", "-e", script, "--", ...args],
    { stdio: ["ignore", "pipe", "pipe"], env },
  );
  let out = "";
  c.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  return Object.assign(c, { out: () => out });
}

const stop = async (c: ChildProcess) => {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise((r) => c.once("exit", r));
  c.kill("SIGKILL");
  await gone;
};

describe("cluster mode over etcd, vxlan, two nodes", () => {
  let c: TestCluster;
  let p0: TestPod;
  let p1: TestPod;
  let firstAdd: AgentResponse;
  before(async () => {
    c = await startCluster({ settings: { clusterCIDRs: ["10.96.0.0/16"], backend: "vxlan" }, subnets: [0, 0] });
    const a = await c.addPod(0);
    const b = await c.addPod(1);
    assert.ok(a.pod && b.pod, JSON.stringify([a.res, b.res]));
    p0 = a.pod;
    p1 = b.pod;
    firstAdd = a.res;
  });
  after(async () => {
    await c?.destroy();
  });

  test("each node holds its own pod CIDR; pods on two nodes ping each other; weft status shows nodes and backend", async () => {
    const nodes = await c.store.listNodes();
    assert.deepEqual(
      nodes.map((n) => n.name),
      ["node0", "node1"],
    );
    assert.notEqual(nodes[0].podCIDRs[0], nodes[1].podCIDRs[0]);
    // The pod's address is in its node's CIDR and never the CIDR's first address (the VTEP's).
    for (const [p, n] of [
      [p0, nodes[0]],
      [p1, nodes[1]],
    ] as const) {
      const base = n.podCIDRs[0].split("/")[0];
      assert.equal(p.ips[0].split(".").slice(0, 3).join("."), base.split(".").slice(0, 3).join("."));
      assert.notEqual(p.ips[0], base);
    }
    assert.ok(await reaches(p0, p1.ips[0]), "node0 pod -> node1 pod");
    assert.ok(await reaches(p1, p0.ips[0]), "node1 pod -> node0 pod");
    assert.equal(firstAdd.ok && firstAdd.result!.interfaces![1].mtu, 1450, "pod MTU = underlay 1500 - VXLAN 50");

    await waitFor("both agents to publish one wired pod", async () =>
      (await status(c)).nodes.every((n) => n.agent?.wiredPods === 1),
    );
    const s = await status(c);
    assert.equal(s.backend, "vxlan");
    assert.equal(s.mtu, 1450);
    assert.equal(s.healthy, true, JSON.stringify(s.nodes.map((n) => n.errors)));
    assert.deepEqual(
      s.nodes.map((n) => [n.name, n.ready, n.underlay[0], n.podCIDRs[0], n.lease.ttlSeconds]),
      nodes.map((n) => [n.name, true, n.addresses[0], n.podCIDRs[0], 2]),
    );
    assert.deepEqual(Object.keys(s.nodes[0].peers), ["node1"]);
    assert.equal(s.nodes[0].peers.node1.paths[nodes[1].podCIDRs[0]], "vxlan");
  });

  test("etcd all down: running pods keep connectivity, ADD fails with code 11; etcd back: ADD works again without restarts", async () => {
    await c.etcd.members[0].kill();
    try {
      assert.ok(await reaches(p0, p1.ips[0]), "pods ping while etcd is down");
      const r = await c.addPod(0, { namespace: "default", name: "during-outage" });
      assert.equal(r.res.ok, false);
      if (!r.res.ok) {
        assert.equal(r.res.code, 11, r.res.msg);
        assert.match(r.res.msg, /try again later/);
      }
      // Longer than 2 x TTL: the lease is lost; the datapath stays.
      await sleep(5000);
      assert.ok(await reaches(p1, p0.ips[0]), "pods still ping after the lease is lost");
      const st = await callAgent(c.agents[0].socket, { op: "status", network: "weft" });
      assert.equal(st.ok, false);
      if (!st.ok) assert.equal(st.code, 50);
    } finally {
      await c.etcd.members[0].start();
    }
    let added: TestPod | undefined;
    await waitFor(
      "ADD to work again",
      async () => {
        const r = await c.addPod(0);
        added = r.pod;
        return r.res.ok;
      },
      30_000,
    );
    assert.ok(await reaches(p1, added!.ips[0]), "the new pod is reachable from the other node");
    assert.ok(
      c.agents.every((a) => a.pid() !== undefined && a.lines().filter((l) => l.msg === "agent ready").length === 1),
      "no agent restarted",
    );
  });

  test("a stopped agent's routes disappear from its peers after the TTL; restarted, it gets its CIDR back", async () => {
    const cidr = (await c.store.getNode("node1"))!.podCIDRs[0];
    const routed = async () => (await nodeRoutes(c.agents[0].node.netns)).some((r) => r.dst === cidr);
    await waitFor("node0 to route node1's CIDR", routed);
    await c.agents[1].kill("SIGTERM");
    await waitFor("node1's route to go from node0", async () => !(await routed()), 15_000);
    const s = await status(c);
    const n1 = s.nodes.find((n) => n.name === "node1")!;
    assert.equal(n1.ready, false);
    assert.equal(n1.lease.alive, false);
    assert.deepEqual(n1.podCIDRs, [cidr], "its subnet stays reserved during the grace period");
    await c.agents[1].start();
    assert.equal((await c.store.getNode("node1"))!.podCIDRs[0], cidr);
    await waitFor("node0 to route node1's CIDR again", routed);
  });
});

describe("cluster mode over etcd, vxlan: agent restart", () => {
  let c: TestCluster;
  let p0: TestPod;
  let p1: TestPod;
  before(async () => {
    // The real default TTL (15 s): a restart under load must not let the lease run out.
    c = await startCluster({
      settings: { clusterCIDRs: ["10.93.0.0/16"], backend: "vxlan" },
      subnets: [0, 0],
      leaseTtl: 15,
    });
    p0 = (await c.addPod(0)).pod!;
    p1 = (await c.addPod(1)).pod!;
    assert.ok(p0 && p1);
  });
  after(async () => {
    await c?.destroy();
  });

  test("kill -9 and restart of an agent: same CIDR, a TCP stream across nodes keeps flowing, nothing reprogrammed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-stream-"));
    const file = join(dir, "recv");
    const server = spawn(
      "nsenter",
      [`--net=${p1.ns.path}`, "--", "socat", "-u", "TCP-LISTEN:5000,reuseaddr", `OPEN:${file},creat,append`],
      { stdio: "ignore" },
    );
    await sleep(300);
    // One numbered line every 20 ms over one TCP connection; any error ends the client.
    const client = nodeIn(
      p0.ns.path,
      `
      import { connect } from "node:net";
      const s = connect(5000, process.argv[1]);
      let i = 0;
      s.on("connect", () => setInterval(() => s.write(String(i++) + "\\n"), 20));
      s.on("error", (e) => { console.error(e.message); process.exit(3); });
      s.on("close", () => process.exit(4));`,
      [p1.ips[0]],
    );
    try {
      const lines = () => {
        try {
          return readFileSync(file, "utf8").split("\n").filter(Boolean);
        } catch {
          return [];
        }
      };
      await waitFor("the stream to flow", async () => lines().length > 10);
      const cidrBefore = (await c.store.getNode("node1"))!.podCIDRs;
      const peerLogBefore = c.agents[0].lines().length;
      await c.agents[1].kill("SIGKILL");
      await sleep(300);
      const during = lines().length;
      await c.agents[1].start();
      const ready = c.agents[1].lines().find((l) => l.msg === "agent ready")!;
      assert.deepEqual(ready.podCidrs, cidrBefore, "the restarted agent got its CIDR back");
      assert.equal(ready.backendSetupChanges, 0, "backend setup changed nothing");
      assert.equal(ready.firstSyncChanges, 0, "the first peer sync changed nothing");
      assert.equal(ready.rolledBack ?? 0, 0);
      await sleep(2500); // a couple of resyncs on both sides
      const afterCount = lines().length;
      assert.ok(afterCount > during + 50, `stream kept flowing (${during} -> ${afterCount} lines)`);
      assert.equal(client.exitCode, null, "the TCP client saw no error");
      const got = lines(); // one read: the stream is still appending
      assert.deepEqual(
        got.map(Number),
        got.map((_, i) => i),
        "no line lost or repeated",
      );
      const changed = [0, 1]
        .flatMap((i) => c.agents[i].lines().slice(i === 0 ? peerLogBefore : 0))
        .filter((l) => l.msg === "peer routes synced" || l.msg === "backend set up");
      assert.deepEqual(changed, [], "no kernel change on either node");
    } finally {
      await stop(client);
      await stop(server);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("cluster mode over etcd, host-gw, policy", () => {
  let c: TestCluster;
  before(async () => {
    // node2 sits behind a router: host-gw cannot reach it and says so.
    c = await startCluster({ settings: { clusterCIDRs: ["10.97.0.0/16"], backend: "host-gw" }, subnets: [0, 0, 1] });
  });
  after(async () => {
    await c?.destroy();
  });

  test("host-gw: pods on one underlay subnet ping each other; the off-subnet peer shows in weft status", async () => {
    const a = await c.addPod(0);
    const b = await c.addPod(1);
    assert.ok(a.pod && b.pod);
    assert.ok(await reaches(a.pod, b.pod.ips[0]));
    assert.ok(await reaches(b.pod, a.pod.ips[0]));
    assert.equal(a.res.ok && a.res.result!.interfaces![1].mtu, 1500);
    // Reports are published shortly after a sync, not with it.
    await waitFor(
      "node0 to report on both peers",
      async () => Object.keys((await status(c)).nodes.find((n) => n.name === "node0")?.peers ?? {}).length === 2,
    );
    const s = await status(c);
    assert.equal(s.backend, "host-gw");
    assert.equal(s.nodes.length, 3);
    const n0 = s.nodes.find((n) => n.name === "node0")!;
    assert.equal(n0.peers.node1.ok, true);
    assert.equal(n0.peers.node2.ok, false);
    assert.ok(
      n0.errors.some((e) => /^peer node2: .*not on this node's subnet/.test(e)),
      JSON.stringify(n0.errors),
    );
    assert.equal(s.healthy, false);
  });

  test("default deny: a new pod sends and receives nothing before its ADD returns, nor after, nor across an agent restart", async () => {
    const o = c.store.objects;
    await o.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "secure" } });
    await o.apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "victim", namespace: "secure", labels: { app: "v" } },
      spec: { nodeName: "node0", containers: [{ name: "c", image: "busybox" }] },
    });
    await o.apply({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "deny-all", namespace: "secure" },
      spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] },
    });
    const src = (await c.addPod(1)).pod!;
    const cidr = (await c.store.getNode("node0"))!.podCIDRs[0];
    const base = cidr.split("/")[0].split(".").slice(0, 3).join(".");
    const { createNetns } = await import("../testlib/netns.js");
    const victimNs = await createNetns("pod");
    // Receivers count datagrams; senders fire at every candidate address every 2 ms, from before
    // the ADD starts until well after it returned.
    const receiver = (ns: string, port: number) =>
      nodeIn(
        ns,
        `
      import { createSocket } from "node:dgram";
      const s = createSocket("udp4");
      s.on("message", (m, r) => console.log(r.address));
      s.bind(${port}, "0.0.0.0", () => console.log("ready"));`,
      );
    const sender = (ns: string, port: number, targets: string[]) =>
      nodeIn(
        ns,
        `
      import { createSocket } from "node:dgram";
      const s = createSocket("udp4");
      s.on("error", () => {});
      const t = ${JSON.stringify(targets)};
      setInterval(() => { for (const a of t) s.send("x", ${port}, a, () => {}); }, 2);`,
      );
    const inVictim = receiver(victimNs.path, 7000);
    const inSrc = receiver(src.ns.path, 7001);
    const procs = [inVictim, inSrc];
    try {
      await waitFor("receivers", async () => inVictim.out().includes("ready") && inSrc.out().includes("ready"));
      const candidates = Array.from({ length: 30 }, (_, i) => `${base}.${i + 1}`);
      procs.push(sender(src.ns.path, 7000, candidates), sender(victimNs.path, 7001, [src.ips[0]]));
      await sleep(500);
      const res = await callAgent(
        c.agents[0].socket,
        {
          op: "add",
          network: "weft",
          containerId: "victim1",
          netns: victimNs.path,
          ifname: "eth0",
          args: { K8S_POD_NAMESPACE: "secure", K8S_POD_NAME: "victim" },
        },
        60_000,
      );
      assert.ok(res.ok, JSON.stringify(res));
      const victimIp = res.result!.ips![0].address.split("/")[0];
      assert.ok(candidates.includes(victimIp));
      await sleep(1500);
      assert.equal(inVictim.out().replace("ready\n", ""), "", "the pod received nothing");
      assert.ok(!inSrc.out().includes(victimIp), "nothing the pod sent arrived");
      // The node's agent killed and restarted: the rules stay in force throughout (adopted, not rebuilt from empty).
      await c.agents[0].kill("SIGKILL");
      await sleep(500);
      await c.agents[0].start();
      await sleep(1000);
      assert.equal(inVictim.out().replace("ready\n", ""), "", "nothing received across an agent restart");
      assert.ok(!inSrc.out().includes(victimIp), "nothing sent across an agent restart");
      assert.equal(
        c.agents[0].lines().find((l) => l.msg === "policy ruleset applied")?.adopted,
        true,
        "the restarted agent adopted the table",
      );
      // Control: without the policy the same probes get through (they would have seen a leak).
      await o.delete({ kind: "NetworkPolicy", namespace: "secure", name: "deny-all" });
      await waitFor(
        "traffic once the policy is gone",
        async () => inVictim.out().replace("ready\n", "") !== "" && inSrc.out().includes(victimIp),
      );
      const del = await callAgent(c.agents[0].socket, {
        op: "del",
        network: "weft",
        containerId: "victim1",
        netns: victimNs.path,
        ifname: "eth0",
      });
      assert.ok(del.ok);
    } finally {
      for (const p of procs) await stop(p);
      await victimNs.remove();
    }
  });
});

describe("cluster mode over a three-member etcd", () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster({
      settings: { clusterCIDRs: ["10.95.0.0/16"], backend: "vxlan" },
      subnets: [0, 0],
      etcdMembers: 3,
    });
  });
  after(async () => {
    await c?.destroy();
  });

  test("killing one etcd member changes nothing users see: ADD works, pods ping, status answers", async () => {
    const a = (await c.addPod(0)).pod!;
    await c.etcd.members[0].kill();
    const t0 = Date.now();
    const b = await c.addPod(1);
    assert.ok(b.res.ok, JSON.stringify(b.res));
    assert.ok(Date.now() - t0 < 20_000);
    assert.ok(await reaches(a, b.pod!.ips[0]));
    assert.ok(await reaches(b.pod!, a.ips[0]));
    const r = await c.cli([
      "status",
      "-o",
      "json",
      "--store",
      "etcd",
      "--etcd-endpoints",
      c.etcd.endpoints.slice(1).join(","),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      (JSON.parse(r.stdout) as ClusterStatus).nodes.map((n) => n.ready),
      [true, true],
    );
    const second = await c.addPod(0);
    assert.ok(second.res.ok, JSON.stringify(second.res));
  });
});

describe(
  "cluster mode over a real kube-apiserver (--store kubernetes)",
  {
    skip: existsSync(kubeApiserverBinary())
      ? false
      : `${kubeApiserverBinary()} is missing (bash scripts/kube-apiserver.sh builds it)`,
  },
  () => {
    let c: TestCluster;
    before(async () => {
      c = await startCluster({
        settings: { clusterCIDRs: ["10.94.0.0/16"], backend: "vxlan" },
        subnets: [0, 0],
        store: "kubernetes",
      });
    });
    after(async () => {
      await c?.destroy();
    });

    test("nodes register as Nodes with their pod CIDRs; pods on two nodes ping each other; status reads it", async () => {
      const nodes = await c.store.listNodes();
      assert.deepEqual(
        nodes.map((n) => n.name),
        ["node0", "node1"],
      );
      assert.notEqual(nodes[0].podCIDRs[0], nodes[1].podCIDRs[0]);
      const a = (await c.addPod(0, { namespace: "default", name: "a" })).pod!;
      const b = (await c.addPod(1, { namespace: "default", name: "b" })).pod!;
      assert.ok(a && b);
      assert.ok(await reaches(a, b.ips[0]));
      assert.ok(await reaches(b, a.ips[0]));
      await waitFor("both agents to publish their report", async () =>
        (await collectStatus(c.store)).nodes.every((n) => n.agent?.wiredPods === 1),
      );
      const s = await collectStatus(c.store);
      assert.equal(s.backend, "vxlan");
      assert.equal(s.healthy, true, JSON.stringify(s.nodes.map((n) => n.errors)));
    });
  },
);
