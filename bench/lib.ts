// Shared pieces of weft's benchmarks: statistics, timing child processes, netns lifetimes,
// the machine description, and the SVG bar chart written next to docs/benchmarks.md.
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { cpus, totalmem } from "node:os";
import { run } from "../src/kernel/exec.js";

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

export function summary(samples: number[]): { n: number; p50: number; p99: number; mean: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: quantile(s, 0.5), p99: quantile(s, 0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

export interface Timed {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion and measures its wall time from spawn to exit, in ms. */
export function timeCommand(argv: string[], env: NodeJS.ProcessEnv, input: string): Promise<Timed> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      resolve({ ms, code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

export async function addNetns(name: string): Promise<string> {
  await run(["ip", "netns", "add", name]);
  return `/run/netns/${name}`;
}

export async function delNetns(name: string): Promise<void> {
  await run(["ip", "netns", "del", name]).catch(() => undefined);
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  return `${cpus().length} x ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${kernel}, Node ${process.version}`;
}

export interface Bar {
  label: string;
  value: number;
  group: string;
}

/** A grouped horizontal bar chart as a standalone SVG (no dependencies, readable on GitHub). */
export function barChart(title: string, unit: string, bars: Bar[]): string {
  const groups = [...new Set(bars.map((b) => b.group))];
  const palette = ["#3b6ea8", "#c9742c", "#5a9a5a", "#9a5a9a"];
  const max = Math.max(...bars.map((b) => b.value)) * 1.15 || 1;
  const rowH = 22;
  const left = 190;
  const width = 720;
  const plotW = width - left - 80;
  const height = 50 + bars.length * rowH + 30;
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const rows = bars
    .map((b, i) => {
      const y = 40 + i * rowH;
      const w = Math.max(1, (b.value / max) * plotW);
      const color = palette[groups.indexOf(b.group) % palette.length];
      return (
        `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(b.label)}</text>` +
        `<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${color}"/>` +
        `<text x="${left + w + 6}" y="${y + 15}">${b.value.toFixed(1)} ${esc(unit)}</text>`
      );
    })
    .join("\n");
  const legend = groups
    .map(
      (g, i) =>
        `<rect x="${left + i * 150}" y="${height - 22}" width="12" height="12" fill="${palette[i % palette.length]}"/>` +
        `<text x="${left + i * 150 + 18}" y="${height - 12}">${esc(g)}</text>`,
    )
    .join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>
${rows}
${legend}
</svg>
`;
}

import { existsSync, writeFileSync } from "node:fs";

/**
 * Replaces (or appends) the section between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in
 * docs/benchmarks.md, so each benchmark rewrites only its own results.
 */
export function writeSection(docPath: string, name: string, body: string): void {
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const header =
    "# Benchmarks\n\nEach section is written by its benchmark in `bench/` (see bench/README.md); numbers come\nfrom one run on the machine named in the section, with the baseline measured in the same run.\n\n";
  const doc = existsSync(docPath) ? readFileSync(docPath, "utf8") : header;
  const block = `${start}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  const next = i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
  writeFileSync(docPath, next);
}

// ---- Lab-based benchmarks: a private lab, processes in its namespaces, iperf3 -----------------
import { readState, type LabState } from "../src/lab/state.js";
import { findPod } from "../src/lab/probe.js";
import type { LabPod } from "../src/lab/pods-state.js";
import type { ChildProcess } from "node:child_process";

export const repoRoot = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const benchArg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
export const benchList = (name: string, dflt: string[]): string[] => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1].split(",").filter(Boolean) : dflt;
};
export const progress = (bench: string, line: string): void => {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${bench}: ${line}\n`);
};
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const today = (): string => new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";

/** A lab of its own (WEFT_LAB_ID/WEFT_LAB_DIR), driven through bin/weft as a user would. */
export class BenchLab {
  readonly id: string;
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  constructor(prefix = "wb-lab") {
    this.id = `${prefix}-${Math.random().toString(36).slice(2, 6)}`;
    this.dir = `/run/${this.id}`;
    this.env = { ...process.env, WEFT_LAB_ID: this.id, WEFT_LAB_DIR: this.dir };
    delete this.env.NODE_EXTRA_CA_CERTS;
  }

  /** Runs `bin/weft ARGS` against this lab; throws with its output when it fails. */
  async weft(args: string[], input = ""): Promise<Timed> {
    const argv = [process.execPath, `${repoRoot}/bin/weft`, ...args];
    const r = input ? await timeCommand(argv, this.env, input) : await capture(argv, this.env);
    if (r.code !== 0)
      throw new Error(`weft ${args.join(" ")} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-600)}`);
    return r;
  }

  async up(nodes: number, backend: string): Promise<void> {
    BenchLab.live.add(this);
    if (!BenchLab.hooked) {
      // Ctrl-C or a crash still removes the labs this run made.
      BenchLab.hooked = true;
      const bail = (code: number) =>
        void Promise.all([...BenchLab.live].map((l) => l.down())).finally(() => process.exit(code));
      process.once("SIGINT", () => bail(130));
      process.once("SIGTERM", () => bail(143));
      process.once("uncaughtException", (e) => {
        process.stderr.write(`${e.stack ?? e.message}\n`);
        bail(1);
      });
    }
    await this.weft(["lab", "up", "--nodes", String(nodes), "--backend", backend]);
  }

  async down(): Promise<void> {
    await capture([process.execPath, `${repoRoot}/bin/weft`, "lab", "down"], this.env);
    BenchLab.live.delete(this);
  }
  private static live = new Set<BenchLab>();
  private static hooked = false;

  state(): LabState {
    const s = readState(`${this.dir}/state.json`);
    if (!s) throw new Error(`lab ${this.id}: no state file`);
    return s;
  }

  nodeNetns(node: string): string {
    const n = this.state().nodes.find((x) => x.name === node);
    if (!n) throw new Error(`lab ${this.id}: no node ${node}`);
    return `/run/netns/${n.netns}`;
  }

  pod(ref: string): LabPod {
    return findPod(this.state(), ref);
  }

  /** Applies objects (one List through `weft apply -f -`) and waits until every Pod in it runs. */
  async apply(items: object[], waitPods = true, timeoutMs = 120_000): Promise<number> {
    const t0 = Date.now();
    await this.weft(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
    const ms = Date.now() - t0;
    const pods = items.filter((o) => (o as { kind?: string }).kind === "Pod") as {
      metadata: { name: string; namespace?: string };
    }[];
    while (waitPods && pods.length) {
      const pending = pods.filter((p) => {
        try {
          this.pod(`${p.metadata.namespace ?? "default"}/${p.metadata.name}`);
          return false;
        } catch {
          return true;
        }
      });
      if (pending.length === 0) break;
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`pods not running after ${timeoutMs} ms: ${pending.map((p) => p.metadata.name).join(", ")}`);
      await sleep(200);
    }
    return ms;
  }
}

/** A Pod manifest for the lab kubelet. */
export function podManifest(
  name: string,
  node: string | undefined,
  labels: Record<string, string>,
  ns = "default",
  ports: number[] = [80],
): object {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: ns, labels },
    spec: {
      ...(node ? { nodeName: node } : {}),
      containers: [{ name: "c", image: "busybox", ports: ports.map((p) => ({ containerPort: p })) }],
    },
  };
}

/** Starts a process inside a network namespace (path /run/netns/X) via nsenter. */
export function spawnIn(netnsPath: string, argv: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  return spawn("nsenter", [`--net=${netnsPath}`, "--", ...argv], { stdio: ["ignore", "pipe", "pipe"], env });
}

/**
 * A joining node's agent (the convergence benches): `weft agent --node NAME` in the node's namespace,
 * its state dir and socket under work, its output in work/NAME.log.
 */
export function spawnJoiningAgent(
  netnsPath: string,
  name: string,
  work: string,
  flags: string[],
  env: NodeJS.ProcessEnv,
): ChildProcess {
  const log = openSync(join(work, `${name}.log`), "w");
  try {
    const weft = join(repoRoot, "bin", "weft");
    const argv = [
      weft,
      "agent",
      "--node",
      name,
      "--state-dir",
      join(work, name),
      "--socket",
      join(work, `${name}.sock`),
    ];
    return spawn("nsenter", [`--net=${netnsPath}`, "--", ...argv, ...flags], { stdio: ["ignore", log, log], env });
  } finally {
    closeSync(log);
  }
}

export function stopChild(c: ChildProcess): void {
  if (c.exitCode === null && c.signalCode === null && c.pid) {
    try {
      process.kill(c.pid, "SIGTERM");
    } catch {
      /* already gone */
    }
  }
}

let iperfPort = 5301;
/**
 * iperf3 TCP throughput in Gbit/s (receiver side) from the client namespace to `addr`, served by
 * a one-off iperf3 server in the server namespace (ended by PID afterwards).
 */
export async function iperf(
  serverNs: string,
  clientNs: string,
  addr: string,
  streams: number,
  seconds: number,
): Promise<number> {
  const port = iperfPort++;
  if (iperfPort > 5399) iperfPort = 5301;
  const server = spawnIn(serverNs, ["iperf3", "-s", "-1", "-p", String(port)]);
  try {
    for (let attempt = 0; ; attempt++) {
      await sleep(attempt === 0 ? 150 : 300);
      const r = await capture([
        "nsenter",
        `--net=${clientNs}`,
        "--",
        "iperf3",
        "-c",
        addr,
        "-p",
        String(port),
        "-P",
        String(streams),
        "-t",
        String(seconds),
        "-J",
      ]);
      let j: { error?: string; end?: { sum_received?: { bits_per_second: number } } } = {};
      try {
        j = JSON.parse(r.stdout);
      } catch {
        /* not JSON: retried below */
      }
      const bps = j.end?.sum_received?.bits_per_second;
      if (r.code === 0 && bps) return bps / 1e9;
      if (attempt >= 10) throw new Error(`iperf3 to ${addr}:${port} failed: ${j.error ?? r.stderr.trim()}`);
    }
  } finally {
    stopChild(server);
  }
}

/** VmRSS of a process in MB, from /proc/PID/status (NaN when it is gone). */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

export const fmt = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
export const verdict = (ok: boolean): string => (ok ? "met" : "**not met**");

/** Like timeCommand, with no stdin (nothing to write, so no EPIPE when the child exits first). */
export function capture(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<Timed> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (e) => (stderr += e.message));
    child.on("close", (code) =>
      resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, code: code ?? 1, stdout, stderr }),
    );
  });
}
