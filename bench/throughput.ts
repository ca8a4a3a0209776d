// Pod-to-pod TCP throughput (iperf3, 1 and N streams) on the same node and across nodes, per
// backend, against the bare underlay (node namespace to node namespace, no weft in the path) in
// the same lab and the same run: the bare figure is the limit, results are ratios to it.
//   node dist-bench/bench/throughput.js [--seconds 5] [--rounds 2] [--streams 1,4] [--backends vxlan,host-gw,vxlan-direct]
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BenchLab, barChart, benchArg, benchList, fmt, iperf, machine, podManifest, progress, repoRoot, summary, today, verdict, writeSection } from "./lib.js";

const SECONDS = benchArg("seconds", 5);
const ROUNDS = benchArg("rounds", 2);
const STREAMS = benchList("streams", ["1", "4"]).map(Number);
const BACKENDS = benchList("backends", ["vxlan", "host-gw", "vxlan-direct"]);
/** Cross-node goals (pod / bare); vxlan-direct has none in the issues. */
const GOALS: Record<string, number | undefined> = { "host-gw": 0.97, vxlan: 0.88 };

type Path = "bare" | "same-node" | "cross-node";
const PATHS: Path[] = ["bare", "same-node", "cross-node"];
type Results = Record<string, Record<Path, Record<number, number[]>>>;

async function measureBackend(backend: string, res: Results): Promise<void> {
  const lab = new BenchLab("wb-tp");
  progress("throughput", `${backend}: lab ${lab.id} up (2 nodes)`);
  try {
    await lab.up(2, backend);
    await lab.apply([podManifest("srv", "n1", { app: "srv" }), podManifest("local", "n1", { app: "cli" }), podManifest("remote", "n2", { app: "cli" })]);
    const st = lab.state();
    const n1 = lab.nodeNetns("n1"), n2 = lab.nodeNetns("n2");
    const srv = lab.pod("default/srv"), local = lab.pod("default/local"), remote = lab.pod("default/remote");
    const ns = (p: { netns: string }) => `/run/netns/${p.netns}`;
    const underlayN1 = st.nodes.find((n) => n.name === "n1")!.ipv4;
    const runs: Record<Path, () => [string, string, string]> = {
      bare: () => [n1, n2, underlayN1],
      "same-node": () => [ns(srv), ns(local), srv.ips[0]],
      "cross-node": () => [ns(srv), ns(remote), srv.ips[0]],
    };
    res[backend] = { bare: {}, "same-node": {}, "cross-node": {} };
    for (let r = 0; r < ROUNDS; r++) {
      for (const streams of STREAMS) {
        // Interleaved, so slow drifts of the machine's load hit every path alike.
        for (const path of PATHS) {
          const [s, c, addr] = runs[path]();
          const g = await iperf(s, c, addr, streams, SECONDS);
          (res[backend][path][streams] ??= []).push(g);
          progress("throughput", `${backend} round ${r + 1}/${ROUNDS} ${path} P=${streams}: ${fmt(g)} Gbit/s`);
        }
      }
    }
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
      const bare = med(res[b].bare[streams]);
      for (const path of PATHS) {
        const v = med(res[b][path][streams]);
        const ratio = v / bare;
        const goal = path === "cross-node" ? GOALS[b] : undefined;
        const g = path === "bare" ? "(the limit)" : goal === undefined ? "-" : `>= ${goal}x: ${verdict(ratio >= goal)}`;
        rows.push(`| ${b} | ${path} | ${streams} | ${fmt(v)} | ${path === "bare" ? "1.00" : fmt(ratio)} | ${g} |`);
        if (path !== "bare") bars.push({ label: `${b} ${path} P=${streams}`, value: ratio * 100, group: path });
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

| backend | path | streams | Gbit/s | x bare | goal |
|---|---|---|---|---|---|
${rows.join("\n")}

![Throughput relative to the bare underlay](bench-throughput.svg)
`;
  writeSection(join(repoRoot, "docs", "benchmarks.md"), "throughput", body);
  writeFileSync(join(repoRoot, "docs", "bench-throughput.svg"), barChart("TCP throughput, % of the bare underlay (higher is better)", "%", bars));
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
