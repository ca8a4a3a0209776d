// Shared pieces of weft's benchmarks: statistics, timing child processes, netns lifetimes,
// the machine description, and the SVG bar chart written next to docs/benchmarks.md.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
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
      return `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(b.label)}</text>` +
        `<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${color}"/>` +
        `<text x="${left + w + 6}" y="${y + 15}">${b.value.toFixed(1)} ${esc(unit)}</text>`;
    })
    .join("\n");
  const legend = groups
    .map((g, i) => `<rect x="${left + i * 150}" y="${height - 22}" width="12" height="12" fill="${palette[i % palette.length]}"/>` +
      `<text x="${left + i * 150 + 18}" y="${height - 12}">${esc(g)}</text>`)
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
  const header = "# Benchmarks\n\nEach section is written by its benchmark in `bench/` (see bench/README.md); numbers come\nfrom one run on the machine named in the section, with the baseline measured in the same run.\n\n";
  const doc = existsSync(docPath) ? readFileSync(docPath, "utf8") : header;
  const block = `${start}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  const next = i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
  writeFileSync(docPath, next);
}
