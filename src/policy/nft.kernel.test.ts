// Kernel test: the rendered ruleset loads with nft 1.0.6 in a test namespace ("the node") and
// enforces what the model says on real traffic between pod namespaces behind routed wf* veths;
// an incremental element update then changes who may connect without touching rules or counters.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createNetns, ping, removeAllNetns, type TestNetns } from "../testlib/netns.js";
import { wireRoutedPod } from "../testlib/routed-pod.js";
import { compile } from "./compile.js";
import { parseCounters, renderDelete, renderElementUpdate, renderRuleset } from "./nft.js";
import type { LocalPod } from "./model.js";
import type { Namespace, NetworkPolicy, Pod } from "../k8s/types.js";

const root = process.getuid?.() === 0;
const servers: ChildProcess[] = [];
after(async () => {
  for (const s of servers) if (s.pid && s.exitCode === null) process.kill(s.pid, "SIGTERM");
  await removeAllNetns();
});

interface TestPod {
  ns: string;
  name: string;
  v4: string;
  v6: string;
  ifname: string;
  labels: Record<string, string>;
  netns?: TestNetns;
}

const PODS: TestPod[] = [
  { ns: "x", name: "a", v4: "10.244.1.1", v6: "fd00:10:244:1::1", ifname: "wfxa", labels: { pod: "a" } },
  { ns: "x", name: "b", v4: "10.244.1.2", v6: "fd00:10:244:1::2", ifname: "wfxb", labels: { pod: "b" } },
  { ns: "y", name: "a", v4: "10.244.2.1", v6: "fd00:10:244:2::1", ifname: "wfya", labels: { pod: "a" } },
];

const namespaces: Namespace[] = ["x", "y"].map((n) => ({ metadata: { name: n, labels: { ns: n } } }));
const podObjects = (labelsOf: (p: TestPod) => Record<string, string>): Pod[] =>
  PODS.map((p) => ({
    metadata: { name: p.name, namespace: p.ns, labels: labelsOf(p) },
    spec: {
      nodeName: "node1",
      containers: [
        {
          name: "srv",
          ports: [
            { name: "http", containerPort: 80 },
            { name: "alt", containerPort: 81 },
          ],
        },
      ],
    },
    status: { phase: "Running", podIPs: [{ ip: p.v4 }, { ip: p.v6 }] },
  }));
const policies: NetworkPolicy[] = [
  {
    metadata: { name: "xa-ingress", namespace: "x" },
    spec: {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [
        { from: [{ podSelector: { matchLabels: { pod: "b" } } }], ports: [{ port: "http" }] },
        {
          from: [{ namespaceSelector: { matchLabels: { ns: "y" } }, podSelector: { matchLabels: { role: "client" } } }],
        },
      ],
    },
  },
  {
    metadata: { name: "xb-egress", namespace: "x" },
    spec: {
      podSelector: { matchLabels: { pod: "b" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ podSelector: {} }] }],
    },
  },
];
const local: LocalPod[] = PODS.map((p) => ({ namespace: p.ns, name: p.name, ifname: p.ifname, ips: [p.v4, p.v6] }));
const model = (labelsOf: (p: TestPod) => Record<string, string>) =>
  compile({ namespaces, pods: podObjects(labelsOf), policies, node: "node1", local });

async function wirePod(node: TestNetns, p: TestPod): Promise<void> {
  p.netns = await wireRoutedPod(node, p.ifname, p.v4, p.v6);
}

function serve(p: TestPod, port: number): void {
  // nsenter execs socat in place, so the PID is socat's; an echo server on IPv4 and IPv6.
  const s = spawn(
    "nsenter",
    [`--net=${p.netns!.path}`, "--", "socat", `TCP6-LISTEN:${port},fork,reuseaddr,ipv6only=0`, "PIPE"],
    { stdio: "ignore" },
  );
  servers.push(s);
}

async function connects(from: TestPod, to: TestPod, port: number, family: 4 | 6 = 4, bind?: string): Promise<boolean> {
  const target = family === 4 ? `TCP4:${to.v4}:${port}` : `TCP6:[${to.v6}]:${port}`;
  const r = await from.netns!.status(
    ["socat", "-T", "2", "STDIO", `${target},connect-timeout=1.5${bind ? `,bind=${bind}` : ""}`],
    { input: "hello\n" },
  );
  return r.code === 0 && r.stdout === "hello\n";
}

async function counter(node: TestNetns, name: string): Promise<number> {
  const j = JSON.parse(await node.exec(["nft", "-j", "list", "counter", "inet", "weft", name])) as {
    nftables: Array<{ counter?: { packets: number } }>;
  };
  return j.nftables.find((x) => x.counter)!.counter!.packets;
}

/** Starts tcpdump on NFLOG group `group` in the namespace; resolves the first logged packet's line. */
async function nflogCapture(ns: TestNetns, group: number): Promise<{ first: Promise<string>; stop: () => void }> {
  const t = spawn("nsenter", [`--net=${ns.path}`, "--", "tcpdump", "-i", `nflog:${group}`, "-n", "-l", "-c", "1"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  servers.push(t);
  let out = "";
  let err = "";
  t.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`tcpdump did not start: ${err}`)), 5000);
    t.stderr!.setEncoding("utf8").on("data", (d: string) => {
      err += d;
      if (err.includes("listening on")) {
        clearTimeout(timer);
        res();
      }
    });
  });
  const first = new Promise<string>((res) => t.on("close", () => res(out)));
  return {
    first,
    stop: () => {
      if (t.pid && t.exitCode === null) process.kill(t.pid, "SIGTERM");
    },
  };
}

async function waitListening(p: TestPod, port: number): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const r = await p.netns!.status(["ss", "-Hltn", `sport = :${port}`]);
    if (r.stdout.trim()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`server on ${p.ns}/${p.name}:${port} did not start`);
}

test(
  "rendered ruleset loads in nft 1.0.6, enforces the model, and takes element updates",
  { skip: !root && "needs root to create network namespaces" },
  async () => {
    const node = await createNetns("pn");
    await node.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await node.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    for (const p of PODS) await wirePod(node, p);
    const [xa, xb, ya] = PODS;
    serve(xa, 80);
    serve(xa, 81);
    serve(ya, 80);
    await waitListening(xa, 80);
    await waitListening(xa, 81);
    await waitListening(ya, 80);

    // Before any policy: everything connects (also proves the wiring).
    assert.ok(await connects(ya, xa, 80), "wiring: y/a -> x/a:80 before policies");

    const m1 = model((p) => p.labels);
    const script = renderRuleset(m1);
    await node.exec(["nft", "-f", "-"], { input: script });
    // Loading it again is the atomic replace path (table exists now).
    await node.exec(["nft", "-f", "-"], { input: script });

    assert.ok(await connects(xb, xa, 80), "x/b -> x/a:80 (named port http) allowed");
    assert.ok(await connects(xb, xa, 80, 6), "x/b -> x/a:80 over IPv6 allowed");
    assert.equal(await connects(xb, xa, 81), false, "x/b -> x/a:81: egress allows, ingress must still deny");
    const log = await nflogCapture(node, 100);
    assert.equal(await connects(ya, xa, 80), false, "y/a -> x/a:80 denied (no role=client)");
    log.stop();
    assert.match(
      await log.first,
      new RegExp(`IP ${ya.v4.replace(/\./g, "\\.")}\\.\\d+ > ${xa.v4.replace(/\./g, "\\.")}\\.80: Flags \\[S\\]`),
      "the drop was logged to NFLOG group 100",
    );
    assert.equal(await connects(ya, xa, 80, 6), false, "y/a -> x/a:80 over IPv6 denied");
    assert.equal(await connects(xb, ya, 80), false, "x/b -> y/a:80 denied by x/b's egress policy");
    assert.ok(await connects(xa, ya, 80), "x/a -> y/a:80 allowed (neither side isolated that way)");

    const xaPolicy = m1.policies.find((p) => p.ref.name === "xa-ingress")!;
    const rule0 = xaPolicy.ingress!.rules[0].counter;
    const rule1 = xaPolicy.ingress!.rules[1].counter;
    const xaGroup = m1.groups.find((g) => g.pods.includes("x/a") && g.direction === "ingress")!;
    const xbGroup = m1.groups.find((g) => g.pods.includes("x/b") && g.direction === "egress")!;
    const allowed0 = await counter(node, rule0);
    assert.ok(allowed0 >= 2, `allow counter ${rule0} counted x/b's connections (${allowed0})`);
    assert.ok((await counter(node, xaGroup.denyCounter)) > 0, "x/a's ingress deny counter counted drops");
    assert.ok((await counter(node, xbGroup.denyCounter)) > 0, "x/b's egress deny counter counted drops");
    assert.equal(await counter(node, rule1), 0);

    // y/a gets role=client: one element update, no rule change, counters kept.
    const m2 = model((p) => (p.ns === "y" ? { ...p.labels, role: "client" } : p.labels));
    const upd = renderElementUpdate(m1, m2);
    assert.ok(upd, "a label change is an element update");
    assert.match(upd, /^add element inet weft s_[0-9a-f]+_4 \{ 10\.244\.2\.1 \}$/m);
    await node.exec(["nft", "-f", "-"], { input: upd });
    assert.ok(await connects(ya, xa, 80), "y/a -> x/a:80 allowed after the update");
    assert.ok(await connects(ya, xa, 81, 6), "y/a -> x/a:81 over IPv6 allowed (rule without ports)");
    assert.ok((await counter(node, rule1)) >= 2, "rule 1 counted y/a's connections");
    assert.ok((await counter(node, rule0)) >= allowed0, "counters survive element updates");

    // And back: the element is deleted again.
    const back = renderElementUpdate(m2, m1)!;
    assert.match(back, /^delete element inet weft s_[0-9a-f]+_4 \{ 10\.244\.2\.1 \}$/m);
    await node.exec(["nft", "-f", "-"], { input: back });
    assert.equal(await connects(ya, xa, 80), false, "y/a -> x/a:80 denied again");

    // Anti-spoofing: x/b sending from y/a's address is dropped at its veth.
    await xb.netns!.exec(["ip", "addr", "add", `${ya.v4}/32`, "dev", "eth0"]);
    const spoofedBefore = await counter(node, "spoofed");
    assert.equal(await connects(xb, xa, 80, 4, ya.v4), false, "x/b spoofing y/a's address is dropped");
    assert.ok((await counter(node, "spoofed")) > spoofedBefore, "the spoofed counter counted it");

    // A full reload that carries the counters over keeps them monotonic.
    const values = parseCounters(await node.exec(["nft", "-j", "list", "counters", "table", "inet", "weft"]));
    const before = await counter(node, rule0);
    assert.equal(values.get(rule0)?.packets, before);
    await node.exec(["nft", "-f", "-"], { input: renderRuleset(m1, { counterValues: values }) });
    assert.equal(await counter(node, rule0), before, "counter value carried over the reload");
    assert.equal(await connects(ya, xa, 80), false, "still enforced after the reload");

    // The table goes away cleanly.
    await node.exec(["nft", "-f", "-"], { input: renderDelete() });
    assert.equal((await node.status(["nft", "list", "table", "inet", "weft"])).code !== 0, true);
    assert.ok(await connects(ya, xa, 80), "no table, no policy");
  },
);

test(
  "anti-spoofing by reverse path: a pod cannot send as another pod or a made-up address; its own and link-local sources pass; other nodes' pods are untouched",
  { skip: !root && "needs root to create network namespaces" },
  async () => {
    const node = await createNetns("ps");
    await node.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await node.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    const mk = (name: string, i: number): TestPod => ({
      ns: "z",
      name,
      v4: `10.244.5.${i}`,
      v6: `fd00:10:244:5::${i}`,
      ifname: `wfz${name}`,
      labels: {},
    });
    const [sa, sb, sc] = [mk("a", 1), mk("b", 2), mk("c", 3)];
    for (const p of [sa, sb, sc]) await wirePod(node, p);
    // Another node's pod, reached over an underlay link that is not a pod veth.
    const remote = await createNetns("pr");
    await node.exec(["ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", remote.name]);
    await node.exec(["ip", "link", "set", "ul0", "up"]);
    await node.exec(["ip", "addr", "add", "192.168.77.1/24", "dev", "ul0"]);
    await node.exec(["ip", "route", "add", "10.244.6.0/24", "via", "192.168.77.2"]);
    await remote.exec(["ip", "link", "set", "ul0", "up"]);
    await remote.exec(["ip", "addr", "add", "192.168.77.2/24", "dev", "ul0"]);
    await remote.exec(["ip", "addr", "add", "10.244.6.1/32", "dev", "lo"]);
    await remote.exec(["ip", "link", "set", "lo", "up"]);
    await remote.exec(["ip", "route", "add", "10.244.5.0/24", "via", "192.168.77.1"]);
    const far: TestPod = {
      ns: "w",
      name: "far",
      v4: "10.244.6.1",
      v6: "fd00:10:244:6::1",
      ifname: "ul0",
      labels: {},
      netns: remote,
    };

    // No policy at all: the anti-spoofing rule is the whole table, and it has no per-pod elements.
    const pods: Pod[] = [sa, sb, sc].map((p) => ({
      metadata: { name: p.name, namespace: p.ns },
      spec: { nodeName: "node1", containers: [{ name: "c" }] },
      status: { phase: "Running", podIPs: [{ ip: p.v4 }, { ip: p.v6 }] },
    }));
    const m = compile({
      namespaces,
      pods,
      policies: [],
      node: "node1",
      local: [sa, sb, sc].map((p) => ({ namespace: p.ns, name: p.name, ifname: p.ifname, ips: [p.v4, p.v6] })),
    });
    const script = renderRuleset(m);
    assert.doesNotMatch(script, /wfz/, "no pod interface appears in the ruleset");
    await node.exec(["nft", "-f", "-"], { input: script });
    serve(sb, 80);
    await waitListening(sb, 80);

    assert.ok(await connects(sa, sb, 80), "a -> b from a's own IPv4 address");
    assert.ok(await connects(sa, sb, 80, 6), "a -> b from a's own IPv6 address (NDP with the gateway works)");
    assert.ok(
      await ping(sa.netns!, "fe80::1%eth0"),
      "a's link-local source reaches its gateway (fe80::/64 on the veth)",
    );
    assert.ok(await connects(far, sb, 80), "a pod on another node (in over the underlay, not a pod veth) reaches b");
    assert.equal(await counter(node, "spoofed"), 0, "nothing legitimate was counted as spoofed");

    // a takes c's addresses, a made-up one and a remote pod's, and sends from them.
    await sa.netns!.exec(["ip", "addr", "add", `${sc.v4}/32`, "dev", "eth0"]);
    await sa.netns!.exec(["ip", "-6", "addr", "add", `${sc.v6}/128`, "dev", "eth0", "nodad"]);
    await sa.netns!.exec(["ip", "addr", "add", "10.9.9.9/32", "dev", "eth0"]);
    await sa.netns!.exec(["ip", "addr", "add", `${far.v4}/32`, "dev", "eth0"]);
    for (const [bind, fam, what] of [
      [sc.v4, 4, "c's IPv4"],
      [`[${sc.v6}]`, 6, "c's IPv6"],
      ["10.9.9.9", 4, "a made-up address"],
      [far.v4, 4, "a remote pod's address"],
    ] as const) {
      const before = await counter(node, "spoofed");
      assert.equal(await connects(sa, sb, 80, fam, bind), false, `a sending as ${what} is dropped`);
      assert.ok((await counter(node, "spoofed")) > before, `the spoofed counter counted a sending as ${what}`);
    }
    // The same spoofed packets pass without the table: the drops above were the rule's.
    await node.exec(["nft", "-f", "-"], { input: renderDelete() });
    const seen = spawn(
      "nsenter",
      [
        `--net=${sb.netns!.path}`,
        "--",
        "tcpdump",
        "-n",
        "-l",
        "-c",
        "1",
        "-i",
        "eth0",
        `src host ${sc.v4} and tcp dst port 80`,
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    servers.push(seen);
    const got = new Promise<string>((res) => {
      let out = "";
      seen.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
      seen.on("close", () => res(out));
    });
    await new Promise((r) => setTimeout(r, 500));
    await connects(sa, sb, 80, 4, sc.v4);
    const line = await Promise.race([got, new Promise<string>((r) => setTimeout(() => r(""), 3000))]);
    assert.match(
      line,
      new RegExp(`${sc.v4.replace(/\./g, "\\.")}\\.\\d+ > ${sb.v4.replace(/\./g, "\\.")}\\.80`),
      "without the rule, a's spoofed SYN reaches b",
    );
  },
);

test(
  "a pod with two weft interfaces sends either interface's address out of either veth; a third pod still cannot use them",
  { skip: !root && "needs root to create network namespaces" },
  async () => {
    const node = await createNetns("pm");
    await node.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await node.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    const mk = (name: string, i: number): TestPod => ({
      ns: "m",
      name,
      v4: `10.244.7.${i}`,
      v6: `fd00:10:244:7::${i}`,
      ifname: `wfm${name}`,
      labels: {},
    });
    const [multi, srv, evil] = [mk("a", 1), mk("t", 2), mk("e", 3)];
    for (const p of [multi, srv, evil]) await wirePod(node, p);
    // multi's second interface: eth1 with its own veth and addresses, no default route (eth0 keeps it).
    const second = { ifname: "wfma1", v4: "10.244.7.11", v6: "fd00:10:244:7::11" };
    await node.exec([
      "ip",
      "link",
      "add",
      second.ifname,
      "type",
      "veth",
      "peer",
      "name",
      "eth1",
      "netns",
      multi.netns!.name,
    ]);
    await node.exec(["ip", "link", "set", second.ifname, "up"]);
    await node.exec(["ip", "addr", "add", "169.254.1.1/32", "dev", second.ifname]);
    await node.exec(["ip", "-6", "addr", "add", "fe80::1/64", "dev", second.ifname, "nodad"]);
    await node.exec(["ip", "route", "add", `${second.v4}/32`, "dev", second.ifname]);
    await node.exec(["ip", "-6", "route", "add", `${second.v6}/128`, "dev", second.ifname]);
    await multi.netns!.exec(["ip", "link", "set", "eth1", "up"]);
    await multi.netns!.exec(["ip", "addr", "add", `${second.v4}/32`, "dev", "eth1"]);
    await multi.netns!.exec(["ip", "-6", "addr", "add", `${second.v6}/128`, "dev", "eth1", "nodad"]);

    const pods: Pod[] = [multi, srv, evil].map((p) => ({
      metadata: { name: p.name, namespace: p.ns },
      spec: { nodeName: "node1", containers: [{ name: "c" }] },
      status: { phase: "Running", podIPs: [{ ip: p.v4 }, { ip: p.v6 }] },
    }));
    const single: LocalPod[] = [multi, srv, evil].map((p) => ({
      namespace: p.ns,
      name: p.name,
      ifname: p.ifname,
      ips: [p.v4, p.v6],
    }));
    const both: LocalPod[] = [
      ...single,
      { namespace: multi.ns, name: multi.name, ifname: second.ifname, ips: [second.v4, second.v6] },
    ];
    const before = compile({ namespaces, pods, policies: [], node: "node1", local: single });
    const after = compile({ namespaces, pods, policies: [], node: "node1", local: both });
    assert.deepEqual(before.siblingSources, [], "single-interface pods get no elements");
    await node.exec(["nft", "-f", "-"], { input: renderRuleset(before) });
    serve(srv, 80);
    await waitListening(srv, 80);

    // Until the controller knows eth1 belongs to the same pod, its address out of eth0 is a spoof.
    let spoofed = await counter(node, "spoofed");
    assert.equal(
      await connects(multi, srv, 80, 4, second.v4),
      false,
      "eth1's address out of eth0 is dropped while eth1 is unknown",
    );
    assert.ok((await counter(node, "spoofed")) > spoofed);

    // The second interface is an element-only change.
    const update = renderElementUpdate(before, after);
    assert.ok(update, "adding a second interface changes only elements");
    assert.match(update, /add element inet weft sib_4 \{ "wfma" \. 10\.244\.7\.11, "wfma1" \. 10\.244\.7\.1 \}/);
    await node.exec(["nft", "-f", "-"], { input: update });
    spoofed = await counter(node, "spoofed");
    assert.ok(
      await connects(multi, srv, 80, 4, second.v4),
      "eth1's IPv4 address out of eth0 (the default route) passes",
    );
    assert.ok(await connects(multi, srv, 80, 6, `[${second.v6}]`), "eth1's IPv6 address out of eth0 passes");
    assert.ok(await connects(multi, srv, 80, 4), "eth0's own address still passes");
    assert.ok(await ping(srv.netns!, second.v4), "a ping to eth1's address is answered (the reply leaves by eth0)");
    assert.equal(await counter(node, "spoofed"), spoofed, "nothing of the two-interface pod was counted as spoofed");

    // A third pod sending as either of multi's interfaces is still dropped.
    await evil.netns!.exec(["ip", "addr", "add", `${second.v4}/32`, "dev", "eth0"]);
    await evil.netns!.exec(["ip", "addr", "add", `${multi.v4}/32`, "dev", "eth0"]);
    await evil.netns!.exec(["ip", "-6", "addr", "add", `${second.v6}/128`, "dev", "eth0", "nodad"]);
    for (const [bind, fam] of [
      [second.v4, 4],
      [multi.v4, 4],
      [`[${second.v6}]`, 6],
    ] as const) {
      const c = await counter(node, "spoofed");
      assert.equal(await connects(evil, srv, 80, fam, bind), false, `a third pod sending as ${bind} is dropped`);
      assert.ok((await counter(node, "spoofed")) > c, `the spoofed counter counted a third pod sending as ${bind}`);
    }

    // eth1 removed: the elements go again, and its address out of eth0 is a spoof once more.
    const back = renderElementUpdate(after, before);
    assert.ok(back);
    await node.exec(["nft", "-f", "-"], { input: back });
    spoofed = await counter(node, "spoofed");
    assert.equal(await connects(multi, srv, 80, 4, second.v4), false);
    assert.ok((await counter(node, "spoofed")) > spoofed);
  },
);
