// BGP configuration change: from a BGPConfiguration written to the store (as `weft apply` writes
// it) until the node's BIRD runs the new config, in a 2-node lab with the bgp backend. Each
// change announces another extra prefix (spec.announce.prefixes); the bench asks n1's BIRD over
// its control socket (one persistent connection, `show route for P`, every 1 ms) until the new
// prefix's static route is there, which BIRD has only once it has taken the new config. The path
// measured: store write, the agent's watch event, its 2 ms coalescing window, render, `configure
// check` of the new file and `configure` over BIRD's control socket, atomic write. Baseline (same run): `birdc configure` of an unchanged
// config alone, what the agent's reload costs at least.
//   node dist-bench/bench/bgp-config.js [--changes 200]
import { createConnection, type Socket } from "node:net";
import { loadavg } from "node:os";
import { join } from "node:path";
import { openStore } from "../src/store/index.js";
import { labEtcdConnection } from "../src/lab/etcd.js";
import {
  BenchLab,
  benchArg,
  capture,
  fmt,
  machine,
  progress,
  repoRoot,
  sleep,
  summary,
  today,
  verdict,
  writeSection,
} from "./lib.js";

const B = "bgp-config";
const CHANGES = benchArg("changes", 200);
const WARMUP = 5;
const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/** A persistent BIRD control connection: one command at a time, the reply up to its final code line. */
class BirdControl {
  private buf = "";
  private waiter: ((text: string) => void) | null = null;
  private constructor(private readonly sock: Socket) {
    sock.setEncoding("utf8").on("data", (d: string) => {
      this.buf += d;
      // A reply ends with a line "DDDD text" (code, space): 0000 ok, 8xxx/9xxx errors, 0001 greeting.
      if (/(^|\n)\d{4} [^\n]*\n$/.test(this.buf) && this.waiter) {
        const w = this.waiter;
        const text = this.buf;
        this.buf = "";
        this.waiter = null;
        w(text);
      }
    });
  }
  static async open(path: string): Promise<BirdControl> {
    const sock = createConnection(path);
    const c = new BirdControl(sock);
    await new Promise<string>((resolve, reject) => {
      c.waiter = resolve;
      sock.once("error", reject);
    });
    return c;
  }
  cmd(line: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.sock.write(`${line}\n`);
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

async function main(): Promise<void> {
  const lab = new BenchLab("bo-bg");
  progress(B, `lab ${lab.id}: up (2 nodes, bgp)`);
  await lab.up(2, "bgp");
  const store = openStore({ kind: "etcd", ...labEtcdConnection(lab.state()) });
  const n1 = lab.state().nodes.find((n) => n.name === "n1")!;
  const socket = join(n1.dir, "state", "bird", "bird.ctl");
  let bird: BirdControl | undefined;
  try {
    bird = await BirdControl.open(socket);
    const samples: number[] = [];
    let timeouts = 0;
    for (let i = 0; i < CHANGES + WARMUP; i++) {
      // 198.18.0.0/15 (benchmarking addresses): a new /32 each change, never in the cluster CIDRs.
      const prefix = `198.18.${Math.floor(i / 250) % 250}.${(i % 250) + 1}/32`;
      const t0 = now();
      await store.objects.apply({
        apiVersion: "weft.dev/v1",
        kind: "BGPConfiguration",
        metadata: { name: "default" },
        spec: { announce: { prefixes: [prefix] } },
      });
      const until = t0 + 5000;
      let t = NaN;
      for (;;) {
        const out = await bird.cmd(`show route for ${prefix}`);
        if (out.includes(prefix.replace("/32", ""))) {
          t = now();
          break;
        }
        if (now() > until) break;
        await sleep(1);
      }
      if (Number.isNaN(t)) timeouts++;
      else if (i >= WARMUP) samples.push(t - t0);
      if (i % 50 === 0) progress(B, `${i}/${CHANGES + WARMUP}: last ${fmt(t - t0, 1)} ms`);
    }
    // Baseline: `birdc configure` of the config BIRD already runs (the reload alone).
    const base: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = now();
      const r = await capture(["birdc", "-s", socket, "configure"]);
      if (r.code === 0) base.push(now() - t0);
    }
    const load = loadavg()[1];
    const s = summary(samples);
    const b = summary(base);
    const ok = s.n >= 100 && s.p99 < 100 && timeouts === 0;
    progress(
      B,
      `p50 ${fmt(s.p50, 1)} ms, p99 ${fmt(s.p99, 1)} ms (n=${s.n}, timeouts ${timeouts}); birdc configure p50 ${fmt(b.p50, 1)} ms`,
    );
    const body = `## BGP configuration change to BIRD running it (bench/bgp-config.ts)

${today()} on ${machine()}. A 2-node lab (\`weft lab up --backend bgp\`). Each change writes the
BGPConfiguration to the lab store (etcd) as \`weft apply\` does, announcing a new extra prefix
(\`spec.announce.prefixes\`); the time runs until n1's BIRD has that prefix's static route, which it
has only once it runs the new config (asked over one persistent control-socket connection, every
1 ms). The path: store write, the agent's watch event and its 2 ms coalescing window, render,
\`configure check\` of the new file and \`configure\` over BIRD's control socket, atomic write. ${WARMUP} warm-up changes, then ${s.n} measured.
Baseline (same run): \`birdc configure\` of an unchanged config, ${b.n} times. Goal: p99 < 100 ms.
The machine's 5-minute load average at the end of the run: ${fmt(load, 1)} (the 2 cores were shared
with other jobs during this run; an idle machine was not available to measure on).

| changes | p50 | p99 | mean | not taken within 5 s | baseline: birdc configure p50 / p99 | goal: p99 < 100 ms |
|---|---|---|---|---|---|---|
| ${s.n} | ${fmt(s.p50, 1)} ms | ${fmt(s.p99, 1)} ms | ${fmt(s.mean, 1)} ms | ${timeouts} | ${fmt(b.p50, 1)} / ${fmt(b.p99, 1)} ms | ${verdict(ok)} |
`;
    writeSection(join(repoRoot, "docs", "benchmarks.md"), B, body);
  } finally {
    bird?.close();
    await store.close();
    progress(B, `lab ${lab.id}: down`);
    await lab.down();
  }
}

await main();
