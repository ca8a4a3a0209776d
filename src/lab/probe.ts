// `lab probe` and `lab matrix`: connection attempts from inside a source pod (by its pod server)
// to a destination pod's address, classified as a user would see them.
import { ipFamily } from "../net/ip.js";
import { LabError } from "./lab.js";
import { sctpSupport } from "./probe-sctp.js";
import { netnsPathOf } from "../kernel/netns.js";
import { controlCall, type ProbeProtocol, type ProbeResult } from "./probe-protocol.js";
import { readPods, type LabPod } from "./pods-state.js";
import type { LabState } from "./state.js";

export interface ProbeOutcome {
  from: string;
  to: string;
  port: number;
  protocol: ProbeProtocol;
  connected: boolean;
  result: ProbeResult;
  ms: number;
}

export interface ProbeSpec {
  port: number;
  protocol: ProbeProtocol;
  family?: 4 | 6;
  timeoutMs: number;
}

/**
 * SCTP probes need the kernel's SCTP: asked by opening an SCTP socket (pods share the kernel, so
 * any namespace answers for all), so a kernel without it gets one clear error instead of a matrix
 * of failures.
 */
export async function checkProtocol(lab: LabState, p: ProbeProtocol): Promise<void> {
  if (p !== "SCTP") return;
  const node = lab.nodes[0];
  const s = await sctpSupport(node ? netnsPathOf(node.netns) : undefined);
  if (!s.ok) throw new LabError(`SCTP probes cannot run here: ${s.reason}`);
}

/** The cluster's first family: what probes use unless --family says otherwise. */
export function defaultFamily(lab: LabState): 4 | 6 {
  const first = lab.clusterCidrs[0] ?? "10.0.0.0/8";
  return first.includes(":") ? 6 : 4;
}

export function runningPods(lab: LabState): Map<string, LabPod> {
  const out = new Map<string, LabPod>();
  for (const [k, p] of Object.entries(readPods(lab.dir).pods)) if (p.phase === "Running") out.set(k, p);
  return out;
}

export function findPod(lab: LabState, ref: string): LabPod {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(ref);
  if (!m) throw new LabError(`"${ref}": name a pod as NAMESPACE/NAME`);
  const all = readPods(lab.dir).pods;
  const p = all[ref];
  if (!p)
    throw new LabError(
      `pod ${ref} is not in the lab (the kubelet runs ${Object.keys(all).length} pod(s); apply it first)`,
    );
  if (p.phase !== "Running")
    throw new LabError(`pod ${ref} is not running yet (${p.phase}${p.message ? `: ${p.message}` : ""})`);
  return p;
}

export function addressOf(p: LabPod, family: 4 | 6): string {
  const a = p.ips.find((ip) => ipFamily(ip) === family);
  if (!a)
    throw new LabError(
      `pod ${p.namespace}/${p.name} has no IPv${family} address (it has ${p.ips.join(", ") || "none"})`,
    );
  return a;
}

export async function probeOne(from: LabPod, to: LabPod, spec: ProbeSpec & { family: 4 | 6 }): Promise<ProbeOutcome> {
  const host = addressOf(to, spec.family);
  const r = await controlCall(
    from.controlSocket,
    { op: "probe", host, port: spec.port, protocol: spec.protocol, timeoutMs: spec.timeoutMs },
    spec.timeoutMs + 10_000,
  ).catch((e: unknown) => {
    throw new LabError(`pod ${from.namespace}/${from.name}: ${(e as Error).message}`);
  });
  if (!r.ok) throw new LabError(`pod ${from.namespace}/${from.name}: ${r.error}`);
  if (!("result" in r)) throw new LabError(`pod ${from.namespace}/${from.name}: unexpected answer`);
  return {
    from: `${from.namespace}/${from.name}`,
    to: `${to.namespace}/${to.name}`,
    port: spec.port,
    protocol: spec.protocol,
    connected: r.result === "connected",
    result: r.result,
    ms: r.ms,
  };
}

/** Runs fn over items with at most `limit` at a time. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  });
  await Promise.all(workers);
  return out;
}

export interface MatrixResult {
  port: number;
  protocol: ProbeProtocol;
  family: 4 | 6;
  pods: string[];
  outcomes: ProbeOutcome[];
}

/** `pods`: the running pods to probe (default: the lab kubelet's; real nodes pass theirs). */
export async function probeMatrix(
  lab: LabState,
  spec: ProbeSpec & { family: 4 | 6 },
  running: readonly LabPod[] = [...runningPods(lab).values()],
): Promise<MatrixResult> {
  const pods = [...running].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  const usable = pods.filter((p) => p.ips.some((ip) => ipFamily(ip) === spec.family));
  const pairs = usable.flatMap((a) => usable.map((b) => [a, b] as const));
  const outcomes = await pool(pairs, 64, ([a, b]) => probeOne(a, b, spec));
  return {
    port: spec.port,
    protocol: spec.protocol,
    family: spec.family,
    pods: usable.map((p) => `${p.namespace}/${p.name}`),
    outcomes,
  };
}

/** The contract's JSON: {"port","protocol","matrix":{"NS/FROM":{"NS/TO":bool}}}. */
export function matrixJson(m: MatrixResult): {
  port: number;
  protocol: ProbeProtocol;
  matrix: Record<string, Record<string, boolean>>;
} {
  const matrix: Record<string, Record<string, boolean>> = {};
  for (const p of m.pods) matrix[p] = {};
  for (const o of m.outcomes) matrix[o.from][o.to] = o.connected;
  return { port: m.port, protocol: m.protocol, matrix };
}

const CELL: Record<ProbeResult, string> = { connected: "ok", refused: "refused", timeout: "timeout" };

/** A table: one row per source pod, one column per destination. */
export function matrixTable(m: MatrixResult): string {
  if (m.pods.length === 0) return `no running pods with an IPv${m.family} address\n`;
  const res = new Map(m.outcomes.map((o) => [`${o.from} ${o.to}`, o.result]));
  const w0 = Math.max("FROM \\ TO".length, ...m.pods.map((p) => p.length));
  const widths = m.pods.map((p) => Math.max(p.length, 7));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(i === 0 ? w0 : widths[i - 1]))
      .join("  ")
      .trimEnd();
  const rows = [`${m.protocol}/${m.port} over IPv${m.family}`, line(["FROM \\ TO", ...m.pods])];
  for (const from of m.pods)
    rows.push(line([from, ...m.pods.map((to) => CELL[res.get(`${from} ${to}`) ?? "timeout"])]));
  return rows.join("\n") + "\n";
}
