// Pod-to-pod TCP throughput (iperf3, 1 and N streams) on the same node and across nodes, per
// backend, against the bare underlay (node namespace to node namespace, no weft in the path) in
// the same lab and the same run: the bare figure is the limit, results are ratios to it.
//   node dist-bench/bench/throughput.js [--seconds 5] [--rounds 2] [--streams 1,4] [--backends vxlan,host-gw,vxlan-direct]
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  BenchLab,
  barChart,
  benchArg,
  benchList,
  capture,
  fmt,
  iperf,
  machine,
  podManifest,
  progress,
  repoRoot,
  summary,
  today,
  verdict,
  writeSection,
} from "./lib.js";

const SECONDS = benchArg("seconds", 5);
const ROUNDS = benchArg("rounds", 2);
const STREAMS = benchList("streams", ["1", "4"]).map(Number);
const BACKENDS = benchList("backends", ["vxlan", "host-gw", "vxlan-direct"]);
/** Cross-node goals (pod / bare); vxlan-direct has none in the issues. */
const GOALS: Record<string, number | undefined> = { "host-gw": 0.97, vxlan: 0.88 };

type Path = "bare" | "same-node" | "cross-node" | "overlay" | "bare-no-table" | "cross-node-no-table";
/** Measured in every round, interleaved. */
const PATHS: Path[] = ["bare", "same-node", "cross-node"];
/** Measured last, after weft's nft table is removed from both nodes. */
const NO_TABLE: Path[] = ["bare-no-table", "cross-node-no-table"];
/** What each path is, for the table. */
const WHAT: Record<Path, string> = {
  bare: "bare",
  "same-node": "same-node",
  "cross-node": "cross-node",
  overlay: "node to node over the VXLAN device (no pods)",
  "bare-no-table": "bare, weft's nft table removed",
  "cross-node-no-table": "cross-node, weft's nft table removed",
};
type Results = Record<string, Partial<Record<Path, Record<number, number[]>>>>;

async function vtepAddress(netns: string): Promise<string> {
  const r = await capture(["nsenter", `--net=${netns}`, "--", "ip", "-j", "-4", "addr", "show", "dev", "weft.1"]);
  const addr = (JSON.parse(r.stdout || "[]") as { addr_info?: { local: string }[] }[])[0]?.addr_info?.[0]?.local;
  if (!addr) throw new Error(`no VTEP address on weft.1 in ${netns}: ${r.stderr}`);
  return addr;
}

async function nftDeleteWeftTable(netns: string): Promise<void> {
  const r = await capture(["nsenter", `--net=${netns}`, "--", "nft", "delete", "table", "inet", "weft"]);
  if (r.code !== 0) throw new Error(`nft delete table inet weft in ${netns}: ${r.stderr}`);
}

async function measureBackend(backend: string, res: Results): Promise<void> {
  const lab = new BenchLab("wb-tp");
  progress("throughput", `${backend}: lab ${lab.id} up (2 nodes)`);
  try {
    await lab.up(2, backend);
    await lab.apply([
      podManifest("srv", "n1", { app: "srv" }),
      podManifest("local", "n1", { app: "cli" }),
      podManifest("remote", "n2", { app: "cli" }),
    ]);
    const st = lab.state();
    const n1 = lab.nodeNetns("n1"),
      n2 = lab.nodeNetns("n2");
    const srv = lab.pod("default/srv"),
      local = lab.pod("default/local"),
      remote = lab.pod("default/remote");
    const ns = (p: { netns: string }) => `/run/netns/${p.netns}`;
    const underlayN1 = st.nodes.find((n) => n.name === "n1")!.ipv4;
    // The VXLAN backend's VTEP carries the first address of n1's pod CIDR: traffic from n2 to it
    // crosses the overlay between the nodes themselves, without the pods' veths.
    const vtep = backend === "vxlan" ? await vtepAddress(n1) : undefined;
    const runs: Record<Path, () => [string, string, string]> = {
      bare: () => [n1, n2, underlayN1],
      "same-node": () => [ns(srv), ns(local), srv.ips[0]],
      "cross-node": () => [ns(srv), ns(remote), srv.ips[0]],
      overlay: () => [n1, n2, vtep!],
      "bare-no-table": () => [n1, n2, underlayN1],
      "cross-node-no-table": () => [ns(srv), ns(remote), srv.ips[0]],
    };
    res[backend] = {};
    const measure = async (paths: Path[], label: string) => {
      for (let r = 0; r < ROUNDS; r++) {
        for (const streams of STREAMS) {
          // Interleaved, so slow drifts of the machine's load hit every path alike.
          for (const path of paths) {
            const [s, c, addr] = runs[path]();
            const g = await iperf(s, c, addr, streams, SECONDS);
            ((res[backend][path] ??= {})[streams] ??= []).push(g);
            progress(
              "throughput",
              `${backend} ${label} round ${r + 1}/${ROUNDS} ${path} P=${streams}: ${fmt(g)} Gbit/s`,
            );
          }
        }
      }
    };
    await measure(vtep ? [...PATHS, "overlay"] : PATHS, "");
    // How much of the gap is the routed-veth path itself (two more veth hops and a forwarding
    // step on each node) and how much is weft's table (anti-spoofing, policy hooks, conntrack):
    // the same lab with the table deleted from both nodes, measured last, the lab then torn down.
    for (const n of [n1, n2]) await nftDeleteWeftTable(n);
    await measure(NO_TABLE, "no table");
  } finally {
    await lab.down();
  }
}

function report(res: Results): void {
  const med = (xs: number[] | undefined) => (xs?.length ? summary(xs).p50 : NaN);
  const rows: string[] = [];
  const bars: { label: string; value: number; group: string }[] = [];
  for (const b of Object.keys(res)) {
    for (const streams of STREAMS) {
      const bare = med(res[b].bare?.[streams]);
      const bareNoTable = med(res[b]["bare-no-table"]?.[streams]);
      for (const path of [...PATHS, "overlay", ...NO_TABLE] as Path[]) {
        const xs = res[b][path]?.[streams];
        if (!xs) continue;
        const v = med(xs);
        const base = NO_TABLE.includes(path) ? bareNoTable : bare;
        const ratio = v / base;
        const goal = path === "cross-node" ? GOALS[b] : undefined;
        const isBase = path === "bare" || path === "bare-no-table";
        const g = isBase ? "(the limit)" : goal === undefined ? "-" : `>= ${goal}x: ${verdict(ratio >= goal)}`;
        rows.push(`| ${b} | ${WHAT[path]} | ${streams} | ${fmt(v)} | ${isBase ? "1.00" : fmt(ratio)} | ${g} |`);
        if (!isBase) bars.push({ label: `${b} ${path} P=${streams}`, value: ratio * 100, group: path });
      }
    }
  }
  const body = `## Pod-to-pod TCP throughput (bench/throughput.ts)

${today()} on ${machine()}. Per backend, a 2-node lab (\`weft lab up --nodes 2 --backend B\`): iperf3 TCP,
${STREAMS.join(" and ")} stream(s), ${SECONDS} s each, ${ROUNDS} round(s) (median), server pod on n1, client pod on n1
(same node) or n2 (cross node). The baseline, measured in the same lab and round, interleaved with the
pod runs, is the bare underlay: node namespace n2 to node namespace n1 over the lab's underlay bridge,
no weft in the path. Goals (cross node): host-gw >= 0.97x bare, vxlan >= 0.88x bare. The machine is a
2-core VM: iperf3 is CPU-bound here, so the ratios say more than the absolute numbers.

Two more rows split the gap. For vxlan, "node to node over the VXLAN device": n2 to n1's VTEP
address, the overlay's own cost without pods. Last in each lab, weft's nft table (anti-spoofing,
the policy hooks, and with them conntrack) is deleted from both nodes and bare and cross-node are
measured again, rated against that bare: what remains is the cost of the routed-veth path itself
(one more veth hop and one forwarding step on each node), which weft's design requires (every
pod packet crosses the node's forwarding path, where policy is enforced).

| backend | path | streams | Gbit/s | x bare | goal |
|---|---|---|---|---|---|
${rows.join("\n")}

![Throughput relative to the bare underlay](bench-throughput.svg)
`;
  writeSection(join(repoRoot, "docs", "benchmarks.md"), "throughput", body);
  writeFileSync(
    join(repoRoot, "docs", "bench-throughput.svg"),
    barChart("TCP throughput, % of the bare underlay (higher is better)", "%", bars),
  );
  process.stdout.write(body + "\n");
}

async function main(): Promise<void> {
  const res: Results = {};
  for (const b of BACKENDS) await measureBackend(b, res);
  report(res);
}

main().catch((e: unknown) => {
  process.stderr.write(`throughput: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
