// Pod-to-pod TCP throughput, measured so each weft figure has a hand-wired twin run back to back:
//   (a) truly bare: two namespaces with no weft state, over the same kind of underlay (a bridge in
//       an underlay namespace, as the lab's);
//   (b) hand-wired references in those namespaces: routed veth pods (proxy ARP, /32 routes, as
//       weft wires them), the same + a minimal ct-first nft forward chain, VXLAN, same-node;
//   (c) weft lab pods: host-gw, vxlan, vxlan-direct (cross node) and same node;
//   (d) weft's node-to-node path (the lab's node namespaces, weft's tables loaded).
// Every round runs every scenario once per stream count, odd rounds forward and even rounds
// backward; with offloads as they come, then with TSO/GSO off on every interface of the bench.
// Reported: median [min-max] Gbit/s, Gbit per CPU-second (iperf3 client + server CPU from
// iperf3 itself, plus the machine's softirq time), TCP retransmits, paired ratios (weft / its
// twin in the same round) and the counters that show the path (forwarded datagrams, nft rules).
//   node dist-bench/bench/throughput.js [--seconds 3] [--rounds 7] [--streams 1,4] [--regimes on,off]
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { BenchLab, benchArg, benchList, capture, fmt, machine, podManifest, progress, repoRoot, sleep } from "./lib.js";
import { spawnIn, stopChild, today, writeSection } from "./lib.js";

const SECONDS = benchArg("seconds", 3);
const ROUNDS = benchArg("rounds", 7);
const STREAMS = benchList("streams", ["1", "4"]).map(Number);
const REGIMES = benchList("regimes", ["on", "off"]);
const PREFIX = "tph";

type Scenario =
  | "bare"
  | "bare+ct"
  | "routed"
  | "routed+nft"
  | "hand-vxlan"
  | "hand-local"
  | "weft-n2n"
  | "weft-host-gw"
  | "weft-vxlan"
  | "weft-vxlan-direct"
  | "weft-local";
const SCENARIOS: Scenario[] = [
  "bare",
  "bare+ct",
  "weft-n2n",
  "routed",
  "routed+nft",
  "weft-host-gw",
  "weft-vxlan-direct",
  "hand-vxlan",
  "weft-vxlan",
  "hand-local",
  "weft-local",
];
/** weft scenario -> its hand-wired twin (same shape of path). */
const TWIN: Partial<Record<Scenario, Scenario>> = {
  "bare+ct": "bare",
  "weft-n2n": "bare",
  "weft-host-gw": "routed+nft",
  "weft-vxlan-direct": "routed+nft",
  "weft-vxlan": "hand-vxlan",
  "weft-local": "hand-local",
};
const WHAT: Record<Scenario, string> = {
  bare: "truly bare: node ns to node ns over a bridge, no weft state",
  "bare+ct": "bare with the reference nft table loaded in both nodes (conntrack on for every packet, no rule matches)",
  routed: "hand-wired routed veth pods (host-gw shape)",
  "routed+nft": "hand-wired routed veth + ct-first nft forward chain",
  "hand-vxlan": "hand-wired VXLAN pods (MTU 1450)",
  "hand-local": "hand-wired same-node pods",
  "weft-n2n": "weft lab node ns to node ns (weft tables loaded)",
  "weft-host-gw": "weft host-gw pods, cross node",
  "weft-vxlan": "weft vxlan pods, cross node",
  "weft-vxlan-direct": "weft vxlan-direct pods, cross node",
  "weft-local": "weft same-node pods (host-gw lab)",
};

interface Run {
  gbps: number;
  cpuS: number;
  softirqS: number;
  retrans: number;
  forw: number;
  nftPkts: number;
}
interface Target {
  server: string;
  client: string;
  addr: string;
  /** Node namespaces whose ForwDatagrams count (the path's forwarding steps). */
  nodes: string[];
  before?: () => Promise<void>;
  after?: () => Promise<void>;
  nftPkts?: () => Promise<number>;
}

async function inNs(netns: string, argv: string[], input?: string): Promise<string> {
  const r = input === undefined ? await capture(["nsenter", `--net=${netns}`, "--", ...argv]) : null;
  if (r) {
    if (r.code !== 0) throw new Error(`${argv.join(" ")} in ${netns}: ${r.stderr.trim()}`);
    return r.stdout;
  }
  const { run } = await import("../src/kernel/exec.js");
  return run(argv, { netns, input });
}

// ---- the hand-wired twin: namespaces tph-ul (bridge), tph-A, tph-B (nodes), pods -----------------
const H = (n: string) => `/run/netns/${PREFIX}-${n}`;
const HAND_PODS: { name: string; node: "A" | "B"; ip: string; mtu: number }[] = [
  { name: "a1", node: "A", ip: "198.19.1.10", mtu: 1500 },
  { name: "a2", node: "A", ip: "198.19.1.11", mtu: 1500 },
  { name: "b1", node: "B", ip: "198.19.2.10", mtu: 1500 },
  { name: "a3", node: "A", ip: "198.19.11.10", mtu: 1450 },
  { name: "b3", node: "B", ip: "198.19.12.10", mtu: 1450 },
];
const HAND_NS = ["ul", "A", "B", ...HAND_PODS.map((p) => p.name)];

async function ip(netns: string, ...args: string[]): Promise<void> {
  await inNs(netns, ["ip", ...args]);
}
async function sysctl(netns: string, kv: string): Promise<void> {
  await inNs(netns, ["sysctl", "-qw", kv]);
}

async function handUp(): Promise<void> {
  for (const n of HAND_NS) {
    const r = await capture(["ip", "netns", "add", `${PREFIX}-${n}`]);
    if (r.code !== 0)
      throw new Error(`ip netns add ${PREFIX}-${n}: ${r.stderr.trim()} (a previous run left it? delete ${PREFIX}-*)`);
    await ip(H(n), "link", "set", "lo", "up");
  }
  await ip(H("ul"), "link", "add", "br0", "type", "bridge");
  await ip(H("ul"), "link", "set", "br0", "up");
  const under: Record<"A" | "B", string> = { A: "198.18.0.1", B: "198.18.0.2" };
  for (const n of ["A", "B"] as const) {
    await ip(H("ul"), "link", "add", `p${n}`, "type", "veth", "peer", "name", "eth0", "netns", `${PREFIX}-${n}`);
    await ip(H("ul"), "link", "set", `p${n}`, "master", "br0", "up");
    await ip(H(n), "addr", "add", `${under[n]}/24`, "dev", "eth0");
    await ip(H(n), "link", "set", "eth0", "up");
    for (const kv of ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
      await sysctl(H(n), kv);
  }
  // host-gw routes, and a default route so proxy ARP answers for the pods' gateway.
  await ip(H("A"), "route", "add", "198.19.2.0/24", "via", under.B);
  await ip(H("B"), "route", "add", "198.19.1.0/24", "via", under.A);
  await ip(H("A"), "route", "add", "default", "via", under.B);
  await ip(H("B"), "route", "add", "default", "via", under.A);
  // VXLAN, flannel style: static FDB, permanent neighbour, onlink route.
  const vmac: Record<"A" | "B", string> = { A: "02:00:00:00:0a:01", B: "02:00:00:00:0b:01" };
  const vaddr: Record<"A" | "B", string> = { A: "198.19.11.0", B: "198.19.12.0" };
  for (const n of ["A", "B"] as const) {
    const o = n === "A" ? "B" : "A";
    await ip(
      H(n),
      "link",
      "add",
      "vx0",
      "address",
      vmac[n],
      "mtu",
      "1450",
      "type",
      "vxlan",
      "id",
      "42",
      "dstport",
      "4789",
      "local",
      under[n],
      "dev",
      "eth0",
      "nolearning",
    );
    await ip(H(n), "addr", "add", `${vaddr[n]}/32`, "dev", "vx0");
    await ip(H(n), "link", "set", "vx0", "up");
    await inNs(H(n), ["bridge", "fdb", "append", vmac[o], "dev", "vx0", "dst", under[o]]);
    await ip(H(n), "neigh", "add", vaddr[o], "lladdr", vmac[o], "dev", "vx0", "nud", "permanent");
    await ip(
      H(n),
      "route",
      "add",
      `${o === "A" ? "198.19.11" : "198.19.12"}.0/24`,
      "via",
      vaddr[o],
      "dev",
      "vx0",
      "onlink",
    );
  }
  for (const p of HAND_PODS) {
    const host = `lxc${p.name}`;
    await ip(
      H(p.node),
      "link",
      "add",
      host,
      "mtu",
      String(p.mtu),
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      `${PREFIX}-${p.name}`,
    );
    await ip(H(p.node), "link", "set", host, "up");
    await sysctl(H(p.node), `net.ipv4.conf.${host}.proxy_arp=1`);
    await sysctl(H(p.node), `net.ipv4.neigh.${host}.proxy_delay=0`);
    await ip(H(p.node), "route", "add", `${p.ip}/32`, "dev", host);
    await ip(H(p.name), "link", "set", "eth0", "mtu", String(p.mtu));
    await ip(H(p.name), "addr", "add", `${p.ip}/32`, "dev", "eth0");
    await ip(H(p.name), "link", "set", "eth0", "up");
    await ip(H(p.name), "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link");
    await ip(H(p.name), "route", "add", "default", "via", "169.254.1.1", "dev", "eth0");
  }
}

async function handDown(): Promise<void> {
  for (const n of HAND_NS) await capture(["ip", "netns", "del", `${PREFIX}-${n}`]);
}

/** The reference policy: weft's shape (ct first, then an allow-set lookup, else drop). */
const REF_NFT = `table inet tphref {
  set allowed { type ipv4_addr . inet_service; flags interval; elements = { 198.19.2.10 . 5201-5399, 198.19.1.10 . 5201-5399 } }
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related counter accept
    ct state invalid drop
    ip daddr . tcp dport @allowed counter accept
    counter drop
  }
}
`;
async function refNftLoad(): Promise<void> {
  for (const n of ["A", "B"]) await inNs(H(n), ["nft", "-f", "-"], REF_NFT);
}
async function refNftUnload(): Promise<void> {
  for (const n of ["A", "B"]) await inNs(H(n), ["nft", "delete", "table", "inet", "tphref"]);
}
/** Packets counted by every rule of the reference chain in both nodes. */
async function refNftPackets(): Promise<number> {
  let sum = 0;
  for (const n of ["A", "B"]) {
    const out = await inNs(H(n), ["nft", "list", "table", "inet", "tphref"]).catch(() => "");
    for (const m of out.matchAll(/counter packets (\d+)/g)) sum += Number(m[1]);
  }
  return sum;
}

// ---- measuring -----------------------------------------------------------------------------------
async function forwarded(netns: string): Promise<number> {
  const out = await inNs(netns, ["nstat", "-az", "IpForwDatagrams"]);
  const m = /IpForwDatagrams\s+(\d+)/.exec(out);
  return m ? Number(m[1]) : 0;
}
function softirqTicks(): number {
  // /proc/stat "cpu" line: user nice system idle iowait irq softirq ...
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/);
  return Number(f[7]);
}
const HZ = 100;

let port = 5201;
async function iperfRun(t: Target, streams: number): Promise<Run> {
  const p = port++;
  if (port > 5399) port = 5201;
  await t.before?.();
  try {
    const f0 = (await Promise.all(t.nodes.map(forwarded))).reduce((a, b) => a + b, 0);
    const n0 = (await t.nftPkts?.()) ?? 0;
    const server = spawnIn(t.server, ["iperf3", "-s", "-1", "-p", String(p)]);
    try {
      for (let attempt = 0; ; attempt++) {
        await sleep(attempt === 0 ? 150 : 300);
        const s0 = softirqTicks();
        const r = await capture([
          "nsenter",
          `--net=${t.client}`,
          "--",
          "iperf3",
          "-c",
          t.addr,
          "-p",
          String(p),
          "-P",
          String(streams),
          "-t",
          String(SECONDS),
          "-J",
        ]);
        const s1 = softirqTicks();
        type J = {
          error?: string;
          end?: {
            sum_received?: { bits_per_second: number; seconds: number };
            sum_sent?: { retransmits?: number };
            cpu_utilization_percent?: { host_total: number; remote_total: number };
          };
        };
        let j: J = {};
        try {
          j = JSON.parse(r.stdout) as J;
        } catch {
          /* retried */
        }
        const e = j.end;
        if (r.code === 0 && e?.sum_received?.bits_per_second) {
          const secs = e.sum_received.seconds || SECONDS;
          const cpu = e.cpu_utilization_percent ?? { host_total: NaN, remote_total: NaN };
          const f1 = (await Promise.all(t.nodes.map(forwarded))).reduce((a, b) => a + b, 0);
          const n1 = (await t.nftPkts?.()) ?? 0;
          return {
            gbps: e.sum_received.bits_per_second / 1e9,
            cpuS: ((cpu.host_total + cpu.remote_total) / 100) * secs,
            softirqS: (s1 - s0) / HZ,
            retrans: e.sum_sent?.retransmits ?? 0,
            forw: f1 - f0,
            nftPkts: n1 - n0,
          };
        }
        if (attempt >= 10) throw new Error(`iperf3 to ${t.addr}:${p} failed: ${j.error ?? r.stderr.trim()}`);
      }
    } finally {
      stopChild(server);
    }
  } finally {
    await t.after?.();
  }
}

/** Every interface (but lo) of these namespaces: TSO and GSO on or off. */
async function setOffloads(namespaces: string[], on: boolean): Promise<void> {
  for (const ns of namespaces) {
    const links = JSON.parse(await inNs(ns, ["ip", "-j", "link", "show"])) as { ifname: string }[];
    for (const l of links) {
      if (l.ifname === "lo") continue;
      await inNs(ns, ["ethtool", "-K", l.ifname, "tso", on ? "on" : "off", "gso", on ? "on" : "off"]).catch(() => "");
    }
  }
}

// ---- the weft labs ---------------------------------------------------------------------------------
interface WeftLab {
  lab: BenchLab;
  n1: string;
  n2: string;
  srv: string;
  srvIp: string;
  local: string;
  remote: string;
  underlayN1: string;
  namespaces: string[];
}

async function weftLab(backend: string): Promise<WeftLab> {
  const lab = new BenchLab(`tp-${backend.replace("vxlan-direct", "vxd").replace("host-gw", "hgw")}`);
  progress("throughput", `${backend}: lab ${lab.id} up`);
  await lab.up(2, backend);
  await lab.apply([
    podManifest("srv", "n1", { app: "srv" }),
    podManifest("local", "n1", { app: "cli" }),
    podManifest("remote", "n2", { app: "cli" }),
  ]);
  const st = lab.state();
  const pod = (r: string) => lab.pod(r);
  const nsOf = (p: { netns: string }) => `/run/netns/${p.netns}`;
  const srv = pod("default/srv");
  return {
    lab,
    n1: lab.nodeNetns("n1"),
    n2: lab.nodeNetns("n2"),
    srv: nsOf(srv),
    srvIp: srv.ips[0],
    local: nsOf(pod("default/local")),
    remote: nsOf(pod("default/remote")),
    underlayN1: st.nodes.find((n) => n.name === "n1")!.ipv4,
    namespaces: [
      lab.nodeNetns("n1"),
      lab.nodeNetns("n2"),
      `/run/netns/${st.underlay.netns}`,
      nsOf(srv),
      nsOf(pod("default/local")),
      nsOf(pod("default/remote")),
    ],
  };
}

type Results = Record<string, Partial<Record<Scenario, Run[]>>>; // key: `${regime} P=${streams}`

function med(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const range = (xs: number[]) => {
  const s = xs.filter(Number.isFinite);
  return `${fmt(med(s))} [${fmt(Math.min(...s))}-${fmt(Math.max(...s))}]`;
};
const eff = (r: Run) => (r.gbps * SECONDS) / (r.cpuS + r.softirqS);

async function main(): Promise<void> {
  const started = today();
  const load0 = loadavg();
  const labs: Record<string, WeftLab> = {};
  const res: Results = {};
  const loads: string[] = [];
  try {
    await handUp();
    for (const b of ["host-gw", "vxlan", "vxlan-direct"]) labs[b] = await weftLab(b);
    const hg = labs["host-gw"];
    const targets: Record<Scenario, Target> = {
      bare: { server: H("A"), client: H("B"), addr: "198.18.0.1", nodes: [H("A"), H("B")] },
      "bare+ct": {
        server: H("A"),
        client: H("B"),
        addr: "198.18.0.1",
        nodes: [H("A"), H("B")],
        before: refNftLoad,
        after: refNftUnload,
        nftPkts: refNftPackets,
      },
      routed: { server: H("a1"), client: H("b1"), addr: "198.19.1.10", nodes: [H("A"), H("B")] },
      "routed+nft": {
        server: H("a1"),
        client: H("b1"),
        addr: "198.19.1.10",
        nodes: [H("A"), H("B")],
        before: refNftLoad,
        after: refNftUnload,
        nftPkts: refNftPackets,
      },
      "hand-vxlan": { server: H("a3"), client: H("b3"), addr: "198.19.11.10", nodes: [H("A"), H("B")] },
      "hand-local": { server: H("a1"), client: H("a2"), addr: "198.19.1.10", nodes: [H("A")] },
      "weft-n2n": { server: hg.n1, client: hg.n2, addr: hg.underlayN1, nodes: [hg.n1, hg.n2] },
      "weft-host-gw": { server: hg.srv, client: hg.remote, addr: hg.srvIp, nodes: [hg.n1, hg.n2] },
      "weft-local": { server: hg.srv, client: hg.local, addr: hg.srvIp, nodes: [hg.n1] },
      "weft-vxlan": {
        server: labs.vxlan.srv,
        client: labs.vxlan.remote,
        addr: labs.vxlan.srvIp,
        nodes: [labs.vxlan.n1, labs.vxlan.n2],
      },
      "weft-vxlan-direct": {
        server: labs["vxlan-direct"].srv,
        client: labs["vxlan-direct"].remote,
        addr: labs["vxlan-direct"].srvIp,
        nodes: [labs["vxlan-direct"].n1, labs["vxlan-direct"].n2],
      },
    };
    const allNs = [...HAND_NS.map(H), ...Object.values(labs).flatMap((l) => l.namespaces)];
    for (const regime of REGIMES) {
      await setOffloads(allNs, regime === "on");
      for (let r = 0; r < ROUNDS; r++) {
        const order = r % 2 === 0 ? SCENARIOS : [...SCENARIOS].reverse();
        const l0 = loadavg()[0];
        for (const streams of STREAMS) {
          for (const s of order) {
            const run = await iperfRun(targets[s], streams);
            ((res[`${regime} P=${streams}`] ??= {})[s] ??= []).push(run);
            progress(
              "throughput",
              `offloads ${regime} round ${r + 1}/${ROUNDS} P=${streams} ${s}: ${fmt(run.gbps)} Gbit/s, ${run.retrans} retr, fwd ${run.forw}, nft ${run.nftPkts}`,
            );
          }
        }
        loads.push(`${regime} round ${r + 1}: ${fmt(l0)} -> ${fmt(loadavg()[0])}`);
      }
      await setOffloads(allNs, true);
    }
  } finally {
    for (const l of Object.values(labs)) await l.lab.down();
    await handDown();
  }
  report(res, started, load0, loads);
}

function report(res: Results, started: string, load0: number[], loads: string[]): void {
  const sections: string[] = [];
  for (const [key, byScen] of Object.entries(res)) {
    const rows: string[] = [];
    for (const s of SCENARIOS) {
      const runs = byScen[s];
      if (!runs) continue;
      const twin = TWIN[s];
      const tw = twin ? byScen[twin] : undefined;
      const paired = tw ? runs.map((x, i) => x.gbps / tw[i].gbps) : [];
      const pairedEff = tw ? runs.map((x, i) => eff(x) / eff(tw[i])) : [];
      rows.push(
        `| ${s} | ${range(runs.map((x) => x.gbps))} | ${fmt(med(runs.map(eff)))} | ${fmt(med(runs.map((x) => x.retrans)), 0)} [${Math.min(...runs.map((x) => x.retrans))}-${Math.max(...runs.map((x) => x.retrans))}] | ${twin ? `${range(paired)} vs ${twin}` : "-"} | ${twin ? fmt(med(pairedEff)) : "-"} | ${fmt(med(runs.map((x) => x.forw)), 0)} | ${fmt(med(runs.map((x) => x.nftPkts)), 0)} |`,
      );
    }
    sections.push(`### Offloads ${key.replace(" P=", ", ")} stream(s)

| scenario | Gbit/s median [min-max] | Gbit per CPU-s | TCP retransmits median [min-max] | paired ratio weft / twin, median [min-max] | paired eff ratio | forwarded datagrams (nodes, median) | ref nft rule packets (median) |
|---|---|---|---|---|---|---|---|
${rows.join("\n")}`);
  }
  const body = `## Pod-to-pod TCP throughput (bench/throughput.ts)

Run ${started} on ${machine()}; 1-minute load average ${fmt(load0[0])} at the start (other jobs shared the 2 cores;
per round, before -> after: ${loads.join("; ")}).
\`node dist-bench/bench/throughput.js --seconds ${SECONDS} --rounds ${ROUNDS} --streams ${STREAMS.join(",")} --regimes ${REGIMES.join(",")}\`:
iperf3 TCP, ${SECONDS} s per run, ${ROUNDS} rounds, every scenario once per round and stream count, odd rounds
in the listed order and even rounds backwards; offloads as they come ("on"), then TSO and GSO off on every
interface of the bench ("off", each segment its own skb: the per-packet regime).

Scenarios: ${Object.entries(WHAT)
    .map(([k, v]) => `**${k}**: ${v}`)
    .join("; ")}. The hand-wired namespaces (\`${PREFIX}-*\`) are two "nodes" on a bridge in an underlay
namespace (as the lab's), pods wired as weft wires them (/32, proxy ARP, default via 169.254.1.1); the reference
nft chain (\`ct state established,related accept; ct state invalid drop; ip daddr . tcp dport @allowed accept;
drop\`) is loaded in both nodes only for the routed+nft runs.

**Paired ratio**: the weft run divided by its twin's run of the same round (run within seconds of each other),
median over rounds: weft-n2n / bare, weft-host-gw and weft-vxlan-direct / routed+nft (weft's table has the same
ct-first shape), weft-vxlan / hand-vxlan (no nft in the twin: the ratio includes weft's policy table),
weft-local / hand-local. **Gbit per CPU-s**: Gbit moved / (iperf3 client + server CPU seconds as iperf3 reports them +
the whole machine's softirq seconds from /proc/stat during the run; the softirq term includes other jobs').
**Forwarded datagrams**: IpForwDatagrams delta of the path's node namespaces (0 for node to node, as it should
be); **ref nft rule packets**: packets counted by the reference chain's rules (only routed+nft).

${sections.join("\n\n")}
`;
  writeSection(join(repoRoot, "docs", "benchmarks.md"), "throughput", body);
  process.stdout.write(body + "\n");
}

main().catch(async (e: unknown) => {
  process.stderr.write(`throughput: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  await handDown();
  process.exit(1);
});
