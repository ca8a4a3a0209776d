// The lab as a user drives it: `weft lab up/probe/matrix/exec/down` on a real kernel (namespaces),
// real etcd, real agents and the real CNI plugin. Ground truth for probes comes from socat run in
// the same namespaces, not from the lab's own code.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { readPods } from "./pods-state.js";
import { sctpSupport } from "./probe-sctp.js";
import { alive, skipReason, socatTcp, socatUdpEcho, TestLab } from "../testlib/lab.js";
import { ensureNode, ensureUnderlay, deleteNetns, listNetns } from "./topology.js";
import { processesInNetns } from "./procs.js";
import { run, runStatus } from "../kernel/exec.js";
import { apiserverBinary } from "./apiserver.js";
import { kubectlBinary, kubectlSkipReason } from "../testlib/kubectl.js";
import { openStore, type StoreConfig } from "../store/index.js";
import { isStoreError } from "../store/errors.js";
import { unixEndpoints } from "./etcd.js";

const skip = skipReason();

async function machineLinks(): Promise<string[]> {
  return (JSON.parse(await run(["ip", "-j", "link", "show"])) as Array<{ ifname: string }>).map((l) => l.ifname);
}

describe("lab topology", { skip }, () => {
  test("underlay and nodes are made inside namespaces and removed without a trace", async () => {
    const t = Math.random().toString(36).slice(2, 8);
    const ul = `wt-ul-${t}`;
    const nodes = [1, 2].map((i) => ({
      ul,
      node: `n${i}`,
      netns: `wt-n${i}-${t}`,
      ipv4: `10.250.0.${10 + i}`,
      ipv6: `fd00:250::${10 + i}`,
      gateway4: "10.250.0.1",
      gateway6: "fd00:250::1",
    }));
    try {
      await ensureUnderlay(ul, ["10.250.0.1", "fd00:250::1"]);
      for (const n of nodes) await ensureNode(n);
      // A second pass changes nothing and does not fail (idempotent).
      for (const n of nodes) await ensureNode(n);
      const ping = await run(["busybox", "ping", "-c", "1", "-W", "2", "10.250.0.12"], {
        netns: `/run/netns/${nodes[0].netns}`,
      }).then(
        () => true,
        () => false,
      );
      assert.ok(ping, "n1 reaches n2 over the underlay bridge");
      const ping6 = await run(["busybox", "ping", "-6", "-c", "1", "-W", "2", "fd00:250::12"], {
        netns: `/run/netns/${nodes[0].netns}`,
      }).then(
        () => true,
        () => false,
      );
      assert.ok(ping6, "n1 reaches n2 over IPv6");
      const routes = JSON.parse(
        await run(["ip", "-j", "route", "show", "default"], { netns: `/run/netns/${nodes[1].netns}` }),
      ) as Array<{ gateway?: string }>;
      assert.deepEqual(
        routes.map((r) => r.gateway),
        ["10.250.0.1"],
        "a node has a default route, as hosts do",
      );
    } finally {
      for (const n of nodes) await deleteNetns(n.netns);
      await deleteNetns(ul);
    }
    const left = (await listNetns()).filter((n) => n.endsWith(t));
    assert.deepEqual(left, []);
  });
});

describe("a 2-node lab with pods", { skip, timeout: 240_000 }, () => {
  const lab = new TestLab();
  let rootLinks: string[] = [];

  before(async () => {
    rootLinks = await machineLinks();
    const r = await lab.cli(["up", "--nodes", "2", "--backend", "host-gw"]);
    assert.equal(r.code, 0, `lab up failed: ${r.stderr}`);
    assert.match(r.stderr, /node n2/, "progress lines on stderr");
  });

  test("the machine's own namespace gets no new interfaces", async () => {
    const mine = new Set(rootLinks);
    const added = (await machineLinks()).filter((l) => !mine.has(l));
    assert.deepEqual(added, []);
  });
  after(async () => {
    await lab.destroy();
  });

  test("the cluster settings are in the lab store (what `weft cluster init` writes)", async () => {
    const settings = await lab.clusterStore().getClusterSettings();
    assert.deepEqual(settings?.clusterCIDRs, ["10.244.0.0/16"]);
    assert.equal(settings?.backend, "host-gw");
  });

  test("the lab etcd takes only clients with the lab's certificate (TCP and unix socket); its keys are 0600", async () => {
    const st = lab.state()!;
    const tls = st.etcdTls!;
    assert.ok(tls, "the lab records its etcd certificates");
    for (const k of [tls.serverKeyFile, tls.clientKeyFile]) assert.equal(statSync(k).mode & 0o777, 0o600, k);
    assert.ok(
      st.etcd.every((m) => m.clientUrl.startsWith("https://")),
      "client URLs are https",
    );
    const refused = async (config: StoreConfig, what: string) => {
      const s = openStore({ ...config, requestTimeoutMs: 1500 } as StoreConfig);
      try {
        await assert.rejects(s.getClusterSettings(), (e: unknown) => isStoreError(e, "Unavailable"), what);
      } finally {
        await s.close();
      }
    };
    await refused(
      { kind: "etcd", endpoints: st.etcd.map((m) => m.clientUrl.replace("https:", "http:")) },
      "plain HTTP on the TCP port",
    );
    await refused(
      { kind: "etcd", endpoints: st.etcd.map((m) => m.clientUrl), tls: { caFile: tls.caFile } },
      "TLS without a client certificate",
    );
    await refused({ kind: "etcd", endpoints: unixEndpoints(st.etcd, false) }, "plain on the unix socket");
    await refused(
      { kind: "etcd", endpoints: unixEndpoints(st.etcd, true), tls: { caFile: tls.caFile } },
      "unix socket without a client certificate",
    );
  });

  test("pods get a namespace on their node, addresses and a kubelet-style status", async () => {
    await lab.applyPod("default", "a", { node: "n1" });
    await lab.applyPod("default", "b", { node: "n2" });
    await lab.applyPod("default", "c", { node: "n1" });
    await lab.applyPod("other", "d"); // no nodeName: the kubelet places it
    const st = lab.state()!;
    for (const [ns, name] of [
      ["default", "a"],
      ["default", "b"],
      ["default", "c"],
      ["other", "d"],
    ]) {
      const p = await lab.waitRunning(ns, name);
      const status = p.status as { podIP: string; podIPs: Array<{ ip: string }>; hostIP: string };
      const nodeName = (p.spec as { nodeName?: string }).nodeName;
      const node = st.nodes.find((n) => n.name === nodeName);
      assert.ok(node, `${ns}/${name} is bound to a lab node (got ${nodeName})`);
      assert.equal(status.hostIP, node.ipv4);
      assert.equal(isIP(status.podIP), 4);
      assert.deepEqual(
        status.podIPs.map((x) => x.ip),
        [status.podIP],
      );
      // The address really is on the pod's interface, inside the pod's namespace.
      const pod = readPods(lab.dir).pods[`${ns}/${name}`];
      const addrs = await run(["ip", "-j", "addr", "show", "dev", "eth0"], { netns: `/run/netns/${pod.netns}` });
      assert.ok(addrs.includes(`"${status.podIP}"`), `${status.podIP} on eth0 of ${pod.netns}`);
    }
    // d went to the less loaded node (n2 had 1 pod, n1 had 2).
    const d = await lab.objects().get({ kind: "Pod", namespace: "other", name: "d" });
    assert.equal((d.spec as { nodeName?: string }).nodeName, "n2");
  });

  test("probe: open port connects (exit 0), closed port is refused (exit 1), TCP and UDP, JSON as the contract says", async () => {
    const ok = await lab.cli(["probe", "default/a", "default/c", "--port", "80", "-o", "json"]);
    assert.equal(ok.code, 0, ok.stderr);
    const j = JSON.parse(ok.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(j).sort(), ["connected", "from", "ms", "port", "protocol", "result", "to"]);
    assert.equal(j.from, "default/a");
    assert.equal(j.to, "default/c");
    assert.equal(j.port, 80);
    assert.equal(j.protocol, "TCP");
    assert.equal(j.connected, true);
    assert.equal(j.result, "connected");
    assert.equal(typeof j.ms, "number");

    const closed = await lab.cli(["probe", "default/a", "default/c", "--port", "81", "-o", "json"]);
    assert.equal(closed.code, 1);
    assert.equal(JSON.parse(closed.stdout).result, "refused");

    const udp = await lab.cli(["probe", "default/c", "default/a", "--port", "53", "--protocol", "UDP", "-o", "json"]);
    assert.equal(udp.code, 0, udp.stderr);
    assert.equal(JSON.parse(udp.stdout).result, "connected");
    const udpClosed = await lab.cli([
      "probe",
      "default/c",
      "default/a",
      "--port",
      "54",
      "--protocol",
      "UDP",
      "-o",
      "json",
    ]);
    assert.equal(udpClosed.code, 1);
    assert.equal(JSON.parse(udpClosed.stdout).result, "refused");

    if (lab.state()!.agentMode === "etcd") {
      // Cluster mode: the backend routes between nodes (a on n1, b on n2).
      const cross = await lab.cli(["probe", "default/a", "default/b", "--port", "80", "-o", "json"]);
      assert.equal(cross.code, 0, `a (n1) -> b (n2): ${cross.stdout} ${cross.stderr}`);
    }

    const bad = await lab.cli(["probe", "default/a", "default/nope", "--port", "80"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /default\/nope/);
  });

  test("a silently dropping destination shows as timeout", async () => {
    const c = readPods(lab.dir).pods["default/c"];
    await run(["nft", "-f", "-"], {
      netns: `/run/netns/${c.netns}`,
      input: "table inet wtdrop {\n chain dropin {\n  type filter hook input priority 0; tcp dport 80 drop\n }\n}\n",
    });
    try {
      const r = await lab.cli(["probe", "default/a", "default/c", "--port", "80", "--timeout-ms", "300", "-o", "json"]);
      assert.equal(r.code, 1);
      assert.equal(JSON.parse(r.stdout).result, "timeout");
    } finally {
      await run(["nft", "delete", "table", "inet", "wtdrop"], { netns: `/run/netns/${c.netns}` });
    }
  });

  test("matrix (TCP and UDP) agrees with socat run from each pod, pair by pair", async () => {
    const pods = readPods(lab.dir).pods;
    for (const [protocol, port] of [
      ["TCP", 80],
      ["TCP", 81],
      ["UDP", 53],
    ] as const) {
      const r = await lab.cli([
        "matrix",
        "--port",
        String(port),
        "--protocol",
        protocol,
        "--timeout-ms",
        "500",
        "-o",
        "json",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const m = JSON.parse(r.stdout) as {
        port: number;
        protocol: string;
        matrix: Record<string, Record<string, boolean>>;
      };
      assert.equal(m.port, port);
      assert.equal(m.protocol, protocol);
      const keys = Object.keys(pods).sort();
      assert.deepEqual(Object.keys(m.matrix).sort(), keys);
      const pairs = keys.flatMap((from) => keys.map((to) => [from, to] as const));
      const truths = await Promise.all(
        pairs.map(([from, to]) =>
          protocol === "TCP"
            ? socatTcp(pods[from].netns, pods[to].ips[0], port)
            : socatUdpEcho(pods[from].netns, pods[to].ips[0], port),
        ),
      );
      pairs.forEach(([from, to], i) =>
        assert.equal(m.matrix[from][to], truths[i], `${protocol}/${port} ${from} -> ${to}`),
      );
      for (const from of keys) {
        assert.deepEqual(Object.keys(m.matrix[from]).sort(), keys, "every pod to every pod, itself included");
        assert.equal(m.matrix[from][from], port !== 81, `${from} to itself over its own address`);
      }
    }
    const table = await lab.cli(["matrix", "--port", "80"]);
    assert.equal(table.code, 0);
    assert.match(table.stdout, /default\/a/);
  });

  test("SCTP on a kernel without it: probe and matrix exit 2 saying the kernel has no SCTP", async (t) => {
    const sctp = await sctpSupport(`/run/netns/${readPods(lab.dir).pods["default/a"].netns}`);
    if (sctp.ok) return t.skip("this kernel has SCTP (an SCTP socket opens)");
    const r = await lab.cli(["matrix", "--protocol", "SCTP"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /this kernel has no SCTP: opening an SCTP socket failed/);
    const p = await lab.cli(["probe", "default/a", "default/b", "--protocol", "SCTP", "--port", "80"]);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /this kernel has no SCTP/);
    // A pod with an SCTP containerPort still runs: its other ports serve, its log says why SCTP does not.
    await lab.applyPod("default", "s", {
      node: "n2",
      ports: [{ containerPort: 80 }, { containerPort: 9899, protocol: "SCTP" }],
    });
    await lab.waitRunning("default", "s");
    const tcp = await lab.cli(["probe", "default/a", "default/s", "--port", "80"]);
    assert.equal(tcp.code, 0, tcp.stdout + tcp.stderr);
    const log = readFileSync(readPods(lab.dir).pods["default/s"].controlSocket.replace(/\.sock$/, ".log"), "utf8");
    assert.match(log, /SCTP port 9899: this kernel has no SCTP/);
    await lab.objects().delete({ kind: "Pod", namespace: "default", name: "s" });
    const gone = Date.now() + 15_000;
    while (readPods(lab.dir).pods["default/s"] && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
    assert.equal(readPods(lab.dir).pods["default/s"], undefined, lab.kubeletLog());
  });

  test("SCTP where the kernel has it: a pod's SCTP port accepts from another node's pod; a closed one refuses", async (t) => {
    const sctp = await sctpSupport(`/run/netns/${readPods(lab.dir).pods["default/a"].netns}`);
    if (!sctp.ok) return t.skip(sctp.reason);
    await lab.applyPod("default", "s", {
      node: "n2",
      ports: [{ containerPort: 80 }, { containerPort: 9899, protocol: "SCTP" }],
    });
    await lab.waitRunning("default", "s");
    const ok = await lab.cli(["probe", "default/a", "default/s", "--protocol", "SCTP", "--port", "9899", "-o", "json"]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { result: string }).result, "connected");
    const closed = await lab.cli([
      "probe",
      "default/a",
      "default/s",
      "--protocol",
      "SCTP",
      "--port",
      "9898",
      "-o",
      "json",
    ]);
    assert.equal(closed.code, 1, closed.stdout + closed.stderr);
    assert.equal((JSON.parse(closed.stdout) as { result: string }).result, "refused");
    await lab.objects().delete({ kind: "Pod", namespace: "default", name: "s" });
    const gone = Date.now() + 15_000;
    while (readPods(lab.dir).pods["default/s"] && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
    assert.equal(readPods(lab.dir).pods["default/s"], undefined, lab.kubeletLog());
  });

  test("exec runs in the pod's and in the node's namespace", async () => {
    const a = readPods(lab.dir).pods["default/a"];
    const inPod = await lab.cli(["exec", "default/a", "--", "ip", "-j", "addr", "show", "dev", "eth0"]);
    assert.equal(inPod.code, 0, inPod.stderr);
    assert.ok(inPod.stdout.includes(`"${a.ips[0]}"`));
    const inNode = await lab.cli(["exec", "n1", "--", "ip", "-j", "addr", "show", "dev", "eth0"]);
    assert.equal(inNode.code, 0, inNode.stderr);
    assert.ok(inNode.stdout.includes('"10.250.0.11"'));
    const code = await lab.cli(["exec", "n2", "--", "sh", "-c", "exit 7"]);
    assert.equal(code.code, 7, "the command's exit code comes through");
  });

  test("deleting a pod runs CNI DEL and removes its namespace and server", async () => {
    const c = readPods(lab.dir).pods["default/c"];
    await lab.objects().delete({ kind: "Pod", namespace: "default", name: "c" });
    const until = Date.now() + 15_000;
    while (readPods(lab.dir).pods["default/c"] && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    assert.equal(readPods(lab.dir).pods["default/c"], undefined, lab.kubeletLog());
    assert.ok(!existsSync(`/run/netns/${c.netns}`));
    assert.deepEqual(alive(c.server ? [c.server] : []), []);
    // The node's route to the pod went with CNI DEL (the agent's work).
    const routes = await run(["ip", "-j", "route", "show"], { netns: `/run/netns/${lab.state()!.nodes[0].netns}` });
    assert.ok(!routes.includes(`"${c.ips[0]}"`), `no route to ${c.ips[0]} left on n1`);
  });

  test("up after the kubelet and etcd crashed repairs the lab; the restarted kubelet catches up", async () => {
    const st = lab.state()!;
    await lab.close(); // our client to the etcd that is about to die
    process.kill(st.kubelet!.pid, "SIGKILL");
    process.kill(st.etcd[0].proc!.pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 200));
    const up = await lab.cli(["up", "--nodes", "2", "--backend", "host-gw"]);
    assert.equal(up.code, 0, up.stderr);
    const after = lab.state()!;
    assert.notEqual(after.kubelet!.pid, st.kubelet!.pid);
    assert.notEqual(after.etcd[0].proc!.pid, st.etcd[0].proc!.pid);
    assert.equal(after.nodes[0].agent!.pid, st.nodes[0].agent!.pid, "live parts are left alone");
    const d = readPods(lab.dir).pods["other/d"];
    await lab.objects().delete({ kind: "Pod", namespace: "other", name: "d" });
    await lab.applyPod("default", "e");
    await lab.waitRunning("default", "e");
    const until = Date.now() + 15_000;
    while (readPods(lab.dir).pods["other/d"] && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    assert.equal(readPods(lab.dir).pods["other/d"], undefined, lab.kubeletLog());
    assert.ok(!existsSync(`/run/netns/${d.netns}`));
  });

  test("up again is idempotent; up with other settings is an error that says so", async () => {
    const before = lab.recordedProcs();
    const again = await lab.cli(["up", "--nodes", "2", "--backend", "host-gw"]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(lab.recordedProcs(), before, "same processes, nothing restarted");
    const other = await lab.cli(["up", "--nodes", "3", "--backend", "host-gw"]);
    assert.equal(other.code, 2);
    assert.match(other.stderr, /--nodes 3 \(running: 2\)/);
    assert.match(other.stderr, /lab down/);
  });

  test("down after an agent crashed still removes everything", async () => {
    const st = lab.state()!;
    const procs = lab.recordedProcs();
    const namespaces = await lab.namespaces();
    assert.ok(namespaces.length >= 5);
    process.kill(st.nodes[0].agent!.pid, "SIGKILL");
    const r = await lab.cli(["down"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(alive(procs), [], "no lab process left");
    assert.deepEqual(await lab.namespaces(), [], "no lab namespace left");
    assert.ok(!existsSync(lab.dir), "no lab files left");
    for (const ns of namespaces) assert.deepEqual(processesInNetns(ns), []);
    const again = await lab.cli(["down"]);
    assert.equal(again.code, 0);
  });
});

describe("a dual-stack lab", { skip, timeout: 120_000 }, () => {
  const lab = new TestLab();
  after(async () => {
    await lab.destroy();
  });

  test("pods get IPv4 and IPv6; probes run over either family", async () => {
    const r = await lab.cli(["up", "--nodes", "2", "--dual-stack"]);
    assert.equal(r.code, 0, r.stderr);
    // Across nodes when the agents route between them (cluster mode), else on one node.
    const cluster = lab.state()!.agentMode === "etcd";
    await lab.applyPod("default", "x", { node: "n1" });
    await lab.applyPod("default", "y", { node: cluster ? "n2" : "n1" });
    const x = await lab.waitRunning("default", "x");
    await lab.waitRunning("default", "y");
    const ips = (x.status as { podIPs: Array<{ ip: string }> }).podIPs.map((p) => p.ip);
    assert.deepEqual(
      ips.map((ip) => isIP(ip)),
      [4, 6],
    );
    for (const fam of ["4", "6"]) {
      const p = await lab.cli(["probe", "default/x", "default/y", "--port", "80", "--family", fam, "-o", "json"]);
      assert.equal(p.code, 0, `IPv${fam}: ${p.stdout} ${p.stderr}`);
      const u = await lab.cli([
        "probe",
        "default/y",
        "default/x",
        "--port",
        "53",
        "--protocol",
        "UDP",
        "--family",
        fam,
        "-o",
        "json",
      ]);
      assert.equal(u.code, 0, `UDP IPv${fam}: ${u.stdout} ${u.stderr}`);
    }
    const down = await lab.cli(["down"]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await lab.namespaces(), []);
  });
});

describe("a lab on a 3-member etcd", { skip, timeout: 120_000 }, () => {
  const lab = new TestLab();
  after(async () => {
    await lab.destroy();
  });

  test("pods keep working when an etcd member dies, and a dead pod server comes back", async () => {
    const r = await lab.cli(["up", "--nodes", "1", "--etcd-members", "3"]);
    assert.equal(r.code, 0, r.stderr);
    const st = lab.state()!;
    assert.equal(st.etcd.length, 3);
    assert.equal(alive(st.etcd.flatMap((m) => (m.proc ? [m.proc] : []))).length, 3);
    await lab.applyPod("default", "p1");
    await lab.waitRunning("default", "p1");

    // A crashed pod process is restarted by the kubelet's sync loop.
    const before = readPods(lab.dir).pods["default/p1"].server!;
    process.kill(before.pid, "SIGKILL");
    const until = Date.now() + 20_000;
    let now = readPods(lab.dir).pods["default/p1"].server;
    const restarted = () => {
      const rec = readPods(lab.dir).pods["default/p1"];
      now = rec.server;
      return rec.phase === "Running" && now !== undefined && now.pid !== before.pid && alive([now]).length === 1;
    };
    while (!restarted() && Date.now() < until) await new Promise((res) => setTimeout(res, 200));
    assert.notEqual(now?.pid, before.pid, `pod server restarted: ${lab.kubeletLog()}`);
    const p = await lab.cli(["probe", "default/p1", "default/p1", "--port", "80", "-o", "json"]);
    assert.equal(p.code, 0, p.stdout + p.stderr);

    // Quorum survives one member: a new pod still gets wired.
    process.kill(st.etcd[2].proc!.pid, "SIGKILL");
    await lab.applyPod("default", "p2");
    await lab.waitRunning("default", "p2");

    const down = await lab.cli(["down"]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await lab.namespaces(), []);
    assert.ok(!existsSync(lab.dir));
  });
});

const kubeSkip =
  skip ??
  (!existsSync(apiserverBinary())
    ? `${apiserverBinary()} is not built (bash scripts/kube-apiserver.sh)`
    : kubectlSkipReason());

describe("a lab on a real kube-apiserver (--store kubernetes)", { skip: kubeSkip, timeout: 180_000 }, () => {
  const lab = new TestLab();
  const kubeconfig = `/tmp/${lab.id}.kubeconfig`;
  const kubectl = (args: string[], input?: string) =>
    runStatus([kubectlBinary(), "--kubeconfig", kubeconfig, ...args], input === undefined ? {} : { input });
  after(async () => {
    await lab.destroy();
    rmSync(kubeconfig, { force: true });
  });

  test("kubectl sees the lab's nodes and Running pods with addresses; deletion completes; down leaves nothing", async () => {
    const up = await lab.cli(["up", "--nodes", "2", "--store", "kubernetes"]);
    assert.equal(up.code, 0, up.stderr);
    const kc = await lab.cli(["kubeconfig"]);
    assert.equal(kc.code, 0, kc.stderr);
    writeFileSync(kubeconfig, kc.stdout, { mode: 0o600 });

    const nodes = JSON.parse((await kubectl(["get", "nodes", "-o", "json"])).stdout) as {
      items: Array<{ metadata: { name: string }; status: { addresses: Array<{ type: string; address: string }> } }>;
    };
    assert.deepEqual(
      nodes.items.map((n) => [n.metadata.name, n.status.addresses.find((a) => a.type === "InternalIP")?.address]),
      [
        ["n1", "10.250.0.11"],
        ["n2", "10.250.0.12"],
      ],
    );

    const pods = ["web", "db"].map((name) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name },
      spec: { containers: [{ name: "c", image: "lab", ports: [{ containerPort: 80 }] }] },
    }));
    const applied = await kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: pods }),
    );
    assert.equal(applied.code, 0, applied.stderr);
    let got: Array<{
      metadata: { name: string };
      spec: { nodeName?: string };
      status: { phase?: string; podIP?: string; hostIP?: string };
    }> = [];
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      got = (JSON.parse((await kubectl(["get", "pods", "-o", "json"])).stdout) as { items: typeof got }).items;
      if (got.length === 2 && got.every((p) => p.status.phase === "Running")) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(
      got.map((p) => p.status.phase),
      ["Running", "Running"],
      lab.kubeletLog(),
    );
    assert.deepEqual(got.map((p) => p.spec.nodeName).sort(), ["n1", "n2"], "spread over the nodes");
    for (const p of got) assert.equal(p.status.hostIP, p.spec.nodeName === "n1" ? "10.250.0.11" : "10.250.0.12");
    const self = await lab.cli(["probe", "default/web", "default/web", "--port", "80", "-o", "json"]);
    assert.equal(self.code, 0, self.stdout + self.stderr);
    if (lab.state()!.agentMode === "kubernetes") {
      // Agents on the apiserver (through the node forwarders) route between the nodes.
      const cross = await lab.cli(["probe", "default/web", "default/db", "--port", "80", "-o", "json"]);
      assert.equal(cross.code, 0, `web -> db across nodes: ${cross.stdout} ${cross.stderr}`);
    }

    const del = await kubectl(["delete", "pod", "web", "--wait=true", "--timeout=20s"]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(readPods(lab.dir).pods["default/web"], undefined, "the kubelet tore the pod down");

    const down = await lab.cli(["down"]);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await lab.namespaces(), []);
    assert.ok(!existsSync(lab.dir));
  });
});
