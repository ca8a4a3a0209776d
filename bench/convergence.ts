// Route convergence: from the start of a new node's agent until every other node has the route to
// its pod subnet, in labs of 10 and 30 nodes. Each repeat stops the last node's agent and starts a
// fresh one in the same node namespace under a new node name with a fresh state dir, so the
// cluster sees a node join; every other node runs `ip monitor route` (started before the agent)
// and the first weft route (proto 230) to a new prefix counts. Also the agents' memory (VmRSS).
// Baselines, same run: the start-up of a bare `node` process (every agent start includes it) and
// a bare idle node process' RSS.
//   node dist-bench/bench/convergence.js [--sizes 10,30] [--repeats 10] [--backend vxlan]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openStore } from "../src/store/index.js";
import { labEtcdConnection, labEtcdFlags } from "../src/lab/etcd.js";
import {
  BenchLab,
  barChart,
  benchArg,
  benchList,
  fmt,
  machine,
  progress,
  repoRoot,
  spawnJoiningAgent,
  capture,
  rssMb,
  sleep,
  spawnIn,
  stopChild,
  summary,
  today,
  verdict,
  writeSection,
} from "./lib.js";

const B = "convergence";
const SIZES = benchList("sizes", ["10", "30"]).map(Number);
const REPEATS = benchArg("repeats", 10);
const BACKEND = benchList("backend", ["vxlan"])[0];
const now = (): number => Number(process.hrtime.bigint()) / 1e6;

interface SizeResult {
  nodes: number;
  joins: number[];
  perNode: number[];
  registered: number[];
  propagation: number[];
  missed: number;
  rss: number[];
}

/** Weft routes (proto 230) a node has now, by destination. */
async function weftRoutes(netns: string): Promise<Set<string>> {
  const r = await capture(["nsenter", `--net=${netns}`, "--", "ip", "-j", "route", "show", "proto", "230"]);
  return new Set((JSON.parse(r.stdout || "[]") as { dst: string }[]).map((x) => x.dst));
}

/** Watches a node's routes; resolves with the time (ms, hrtime) the first new weft route appeared. */
function watchNewRoute(netns: string, known: Set<string>): { mon: ChildProcess; first: Promise<number> } {
  const mon = spawnIn(netns, ["ip", "monitor", "route"]);
  const first = new Promise<number>((resolve) => {
    let buf = "";
    mon.stdout!.setEncoding("utf8").on("data", (d: string) => {
      const t = now();
      buf += d;
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const l of lines) {
        if (l.startsWith("Deleted") || !/\bproto 230\b/.test(l)) continue;
        const dst = l.split(" ")[0];
        if (!known.has(dst)) resolve(t);
      }
    });
    mon.on("close", () => resolve(NaN));
  });
  return { mon, first };
}

async function measureSize(nodes: number): Promise<SizeResult> {
  const lab = new BenchLab("wb-cv");
  const res: SizeResult = { nodes, joins: [], perNode: [], registered: [], propagation: [], missed: 0, rss: [] };
  progress(B, `lab ${lab.id}: up (${nodes} nodes, ${BACKEND})`);
  try {
    const t = Date.now();
    await lab.up(nodes, BACKEND);
    progress(B, `lab up in ${fmt((Date.now() - t) / 1000, 1)} s`);
    const st = lab.state();
    if (st.agentMode !== "etcd")
      throw new Error(`the lab's agents run in ${st.agentMode} mode: convergence needs cluster mode`);
    const target = st.nodes[st.nodes.length - 1];
    const others = st.nodes.filter((n) => n !== target);
    const pid = target.agent?.pid;
    if (!pid) throw new Error(`node ${target.name} has no agent`);
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    const flag = (f: string): string => argv[argv.indexOf(f) + 1];
    const base = ["--underlay-address", flag("--underlay-address"), "--store", "etcd", ...labEtcdFlags(st)];
    process.kill(pid, "SIGTERM");
    await sleep(500);
    const work = join(st.dir, "wb-convergence");
    mkdirSync(work, { recursive: true });
    const targetNs = `/run/netns/${target.netns}`;
    let agent: ChildProcess | null = null;
    // When each node's record lands in the store: splits agent start-up from propagation.
    const store = openStore({ kind: "etcd", ...labEtcdConnection(st) });
    const seen = new Map<string, number>();
    const w = store.watchNodes(
      (ev) => {
        if (ev.type === "added" && !seen.has(ev.object.name)) seen.set(ev.object.name, now());
      },
      { replay: false },
    );
    await w.ready;
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    try {
      // One warm-up join (page cache, first subnet claim), not counted.
      for (let k = 0; k <= REPEATS; k++) {
        const name = `wbj${k}`;
        const known = await Promise.all(others.map((n) => weftRoutes(`/run/netns/${n.netns}`)));
        const watches = others.map((n, i) => watchNewRoute(`/run/netns/${n.netns}`, known[i]));
        await sleep(300); // the monitors are listening
        const t0 = now();
        agent = spawnJoiningAgent(targetNs, name, work, base, env);
        const times = await Promise.race([Promise.all(watches.map((w) => w.first)), sleep(20_000).then(() => null)]);
        for (const w of watches) stopChild(w.mon);
        const per = others.map((_, i) => (times ? times[i] - t0 : NaN));
        if (k > 0) {
          // Memory after the join, while every agent has all peers.
          if (k === REPEATS)
            res.rss = [...others.map((n) => rssMb(n.agent!.pid)), rssMb(agent.pid!)].filter(Number.isFinite);
          const ok = per.filter(Number.isFinite);
          res.missed += per.length - ok.length;
          res.perNode.push(...ok);
          res.joins.push(ok.length === per.length ? Math.max(...ok) : NaN);
          const reg = (seen.get(name) ?? NaN) - t0;
          if (Number.isFinite(reg)) {
            res.registered.push(reg);
            if (ok.length === per.length) res.propagation.push(Math.max(...ok) - reg);
          }
        }
        progress(
          B,
          `${nodes} nodes, join ${k}/${REPEATS}${k === 0 ? " (warm-up)" : ""}: all ${others.length} peers have the route after ` +
            `${times ? fmt(Math.max(...per), 0) : "(timeout 20 s)"} ms (first ${times ? fmt(Math.min(...per), 0) : "-"} ms; in the store after ${fmt((seen.get(name) ?? NaN) - t0, 0)} ms)`,
        );
        stopChild(agent);
        await new Promise((r) => (agent!.exitCode !== null ? r(null) : agent!.once("exit", r)));
        agent = null;
      }
    } finally {
      if (agent) stopChild(agent);
      await w.close().catch(() => undefined);
      await store.close().catch(() => undefined);
    }
  } finally {
    await lab.down();
  }
  return res;
}

/** Baselines: bare `node -e 0` start-up inside a node-like namespace use, and an idle node process' RSS. */
async function baselines(): Promise<{ startMs: number; rss: number }> {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const starts: number[] = [];
  for (let i = 0; i < 10; i++) starts.push((await capture([process.execPath, "-e", "0"], env)).ms);
  const idle = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore", env });
  await sleep(1000);
  const rss = rssMb(idle.pid!);
  stopChild(idle);
  return { startMs: summary(starts).p50, rss };
}

function report(rs: SizeResult[], bl: { startMs: number; rss: number }): void {
  const rows = rs.map((r) => {
    const ok = r.joins.filter(Number.isFinite);
    const s = summary(ok),
      pn = summary(r.perNode);
    const p99 = r.joins.some((x) => !Number.isFinite(x)) ? Infinity : s.p99;
    const rg = summary(r.registered),
      pr = summary(r.propagation);
    return `| ${r.nodes} | ${r.joins.length} | ${fmt(s.p50, 0)} ms | ${Number.isFinite(p99) ? fmt(p99, 0) + " ms" : "timeout"} | ${fmt(pn.p50, 0)} ms | ${fmt(pn.p99, 0)} ms | ${fmt(rg.p50, 0)} ms | ${fmt(pr.p50, 0)} / ${fmt(pr.p99, 0)} ms | ${verdict(p99 < 1000)} (propagation alone: ${verdict(pr.p99 < 1000)}) |`;
  });
  const mem = rs
    .filter((r) => r.rss.length)
    .map((r) => {
      const s = summary(r.rss);
      return `| ${r.nodes} | ${r.rss.length} | ${fmt(s.p50, 0)} MB | ${fmt(Math.max(...r.rss), 0)} MB | ${fmt(Math.max(...r.rss) / bl.rss, 1)}x | ${r.nodes >= 30 ? verdict(Math.max(...r.rss) < 100) : "-"} |`;
    });
  const body = `## Route convergence and agent memory (bench/convergence.ts)

${today()} on ${machine()}. Labs of ${rs.map((r) => r.nodes).join(" and ")} nodes (\`weft lab up --backend ${BACKEND}\`). Each join: the last
node's agent is replaced by a fresh one (new node name, fresh state dir, same node namespace and
underlay address), started with \`nsenter\` + \`bin/weft agent ... --store etcd\` (as CONTRACT.md runs it); every other
node runs \`ip monitor route\` from before the start, and the time is from spawning the agent to the
first weft route (proto 230) to a new prefix on that node. One warm-up join, then ${REPEATS} measured. A
join's figure is its slowest peer's. The bench also watches the store (etcd) for the new node's
record, which splits a join into the agent's start-up and registration, and propagation. Baseline (same run): a bare \`node -e 0\` start-up, ${fmt(bl.startMs, 0)} ms
(NODE_EXTRA_CA_CERTS unset), which every agent start includes. Goal: p99 < 1 s.

| nodes | joins | join p50 | join p99 | per-peer p50 | per-peer p99 | agent start -> node in store, p50 | node in store -> all peers, p50 / p99 | goal: join p99 < 1 s |
|---|---|---|---|---|---|---|---|---|
${rows.join("\n")}

Agent memory (VmRSS from /proc/PID/status) after the last join, every agent in the lab; baseline:
an idle \`node\` process, ${fmt(bl.rss, 0)} MB. Goal at 30 nodes: < 100 MB.

| nodes | agents | RSS p50 | RSS max | max / idle node | goal < 100 MB |
|---|---|---|---|---|---|
${mem.join("\n")}

![Convergence](bench-convergence.svg)
`;
  writeSection(join(repoRoot, "docs", "benchmarks.md"), "convergence", body);
  const bars = rs.flatMap((r) => {
    const s = summary(r.joins.filter(Number.isFinite));
    return [
      { label: `${r.nodes} nodes, join p50`, value: s.p50, group: "join to all peers" },
      { label: `${r.nodes} nodes, join p99`, value: s.p99, group: "join to all peers" },
    ];
  });
  bars.push({ label: "node -e 0 start-up", value: bl.startMs, group: "baseline" });
  writeFileSync(
    join(repoRoot, "docs", "bench-convergence.svg"),
    barChart("Route convergence after a node joins (lower is better)", "ms", bars),
  );
  process.stdout.write(body + "\n");
}

async function main(): Promise<void> {
  const bl = await baselines();
  progress(B, `baseline: node -e 0 ${fmt(bl.startMs, 0)} ms, idle node RSS ${fmt(bl.rss, 0)} MB`);
  const rs: SizeResult[] = [];
  for (const n of SIZES) rs.push(await measureSize(n));
  report(rs, bl);
}

main().catch((e: unknown) => {
  process.stderr.write(`${B}: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
