// One lab for the whole netpol e2e file, driven as a user drives it: `bin/weft apply/delete/label/
// get/explain` and `bin/weft lab matrix/probe/exec` with the test's own lab id. Namespaces x, y, z
// hold pods a, b, c, each serving 80 and 81 on TCP and UDP (named serve-80-tcp, ...), spread so
// that most pairs cross nodes.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { runStatus } from "../../kernel/exec.js";
import { LabNames } from "../../lab/names.js";
import { readPods } from "../../lab/pods-state.js";
import { probeOne } from "../../lab/probe.js";
import { ROOT, TestLab, WEFT_BIN } from "../../testlib/lab.js";
import type { Matrix, PodId } from "./reachability.js";
import { Reachability } from "./reachability.js";

export const NAMESPACES = ["x", "y", "z"] as const;
export const POD_NAMES = ["a", "b", "c"] as const;
export const PODS: PodId[] = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}`));
export const NODES = ["n1", "n2", "n3"];
/** Every namespace has a pod on every node, and same-name pods sit on different nodes. */
export const PLACEMENT: Record<PodId, string> = {
  "x/a": "n1",
  "x/b": "n2",
  "x/c": "n3",
  "y/a": "n2",
  "y/b": "n3",
  "y/c": "n1",
  "z/a": "n3",
  "z/b": "n1",
  "z/c": "n2",
};
/** Namespace labels besides the automatic kubernetes.io/metadata.name: only y has a "team". */
export const NS_LABELS: Record<string, Record<string, string>> = {
  x: { ns: "x" },
  y: { ns: "y", team: "blue" },
  z: { ns: "z" },
};
/** Pod labels: pod=<name>; the c pods also carry tier=edge (for Exists / DoesNotExist). */
export function podLabels(name: string): Record<string, string> {
  return name === "c" ? { pod: name, tier: "edge" } : { pod: name };
}

export const FLOW = join(ROOT, "dist", "e2e", "netpol", "flow.js");

export type Protocol = "TCP" | "UDP" | "SCTP";
export type Json = Record<string, unknown>;

export function namespaceObj(ns: string): Json {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: NS_LABELS[ns] ?? {} } };
}

export function podObj(ns: string, name: string, node?: string, labels = podLabels(name)): Json {
  const ports = [80, 81].flatMap((p) =>
    (["TCP", "UDP"] as const).map((proto) => ({
      name: `serve-${p}-${proto.toLowerCase()}`,
      containerPort: p,
      protocol: proto,
    })),
  );
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: ns, labels },
    spec: { ...(node ? { nodeName: node } : {}), containers: [{ name: "cont-80-81", image: "lab", ports }] },
  };
}

export function netpol(ns: string, name: string, spec: Json): Json {
  return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace: ns }, spec };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface PodInfo {
  ip: string;
  /** Every address (status.podIPs): IPv4 first, then IPv6 in the dual-stack lab. */
  ips: string[];
  node: string;
}

export type Family = 4 | 6;

export interface MatrixCheck {
  /** Pairs that differ in the one matrix taken after the policy was seen in force. */
  diff: string[];
  /** How long until the matrix first matched (ms), or null if it never did before the deadline. */
  convergedMs: number | null;
  table: string;
  /** The verdict matrix. */
  matrix: Matrix;
}

export class NetpolLab {
  readonly lab = new TestLab();
  readonly names = new LabNames(this.lab.id, this.lab.dir);
  private readonly flows = new Set<Flow>();
  /** NetworkPolicies applied (ns/name), to delete them in one call between scenarios. */
  private readonly applied = new Map<string, Json>();
  /** The last expectation checked per "PROTOCOL/PORT": what the cluster shows now. */
  private readonly known = new Map<string, Reachability>();
  /** Probe timeout for matrices: expected drops cost this much, so it stays short. */
  timeoutMs = 500;

  get id(): string {
    return this.lab.id;
  }

  /** `bin/weft ARGS` with this lab's id, as a user runs it. */
  weft(args: string[], input?: string): Promise<CliResult> {
    return runStatus(
      [
        "env",
        `WEFT_LAB_ID=${this.lab.id}`,
        `WEFT_LAB_DIR=${this.lab.dir}`,
        "NODE_EXTRA_CA_CERTS=",
        process.execPath,
        WEFT_BIN,
        ...args,
      ],
      input === undefined ? {} : { input },
    );
  }

  async must(args: string[], input?: string): Promise<CliResult> {
    const r = await this.weft(args, input);
    if (r.code !== 0) throw new Error(`weft ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
    return r;
  }

  apply(objs: Json[]): Promise<CliResult> {
    for (const o of objs) {
      const md = o.metadata as { name: string; namespace?: string };
      if (o.kind === "NetworkPolicy") this.applied.set(`${md.namespace}/${md.name}`, o);
    }
    return this.weft(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: objs }));
  }

  async mustApply(objs: Json[]): Promise<void> {
    const r = await this.apply(objs);
    if (r.code !== 0) throw new Error(`weft apply exited ${r.code}: ${r.stderr.trim()}`);
  }

  /** Deletes every NetworkPolicy this fixture applied, in one `weft delete -f -`. */
  async deleteAppliedPolicies(): Promise<void> {
    if (this.applied.size === 0) return;
    const items = [...this.applied.values()];
    await this.must(
      ["delete", "--ignore-not-found", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items }),
    );
    this.applied.clear();
  }

  async policies(): Promise<Array<{ ns: string; name: string }>> {
    const r = await this.must(["get", "netpol", "-A", "-o", "json"]);
    const items = (JSON.parse(r.stdout) as { items: Array<{ metadata: { name: string; namespace: string } }> }).items;
    return items.map((i) => ({ ns: i.metadata.namespace, name: i.metadata.name }));
  }

  async pods(): Promise<Map<PodId, PodInfo & { phase: string }>> {
    const r = await this.must(["get", "pods", "-A", "-o", "json"]);
    const items = (
      JSON.parse(r.stdout) as {
        items: Array<{
          metadata: { name: string; namespace: string };
          spec: { nodeName?: string };
          status?: { phase?: string; podIP?: string; podIPs?: Array<{ ip: string }> };
        }>;
      }
    ).items;
    return new Map(
      items.map((i) => [
        `${i.metadata.namespace}/${i.metadata.name}`,
        {
          ip: i.status?.podIP ?? "",
          ips: (i.status?.podIPs ?? []).map((x) => x.ip),
          node: i.spec.nodeName ?? "",
          phase: i.status?.phase ?? "",
        },
      ]),
    );
  }

  async waitRunning(ids: readonly PodId[], timeoutMs = 60_000): Promise<Map<PodId, PodInfo>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const all = await this.pods();
      const missing = ids.filter((id) => all.get(id)?.phase !== "Running" || !all.get(id)?.ip);
      if (missing.length === 0) return all;
      if (Date.now() > until)
        throw new Error(
          `pods not Running after ${timeoutMs} ms: ${missing.join(", ")}; kubelet log: ${this.lab.kubeletLog()}`,
        );
      await sleep(200);
    }
  }

  /** `lab matrix -o json` over the running pods. */
  async matrix(
    port: number,
    protocol: Protocol = "TCP",
    family: Family = 4,
    timeoutMs = this.timeoutMs,
  ): Promise<Matrix> {
    const r = await this.lab.cli([
      "matrix",
      "--port",
      String(port),
      "--protocol",
      protocol,
      "--family",
      String(family),
      "--timeout-ms",
      String(timeoutMs),
      "-o",
      "json",
    ]);
    if (r.code !== 0) throw new Error(`lab matrix exited ${r.code}: ${r.stderr.trim()}`);
    return (JSON.parse(r.stdout) as { matrix: Matrix }).matrix;
  }

  /**
   * Probes pairs directly through the lab's pod servers (what `lab probe` does, without starting a
   * CLI per probe): cheap enough to poll while waiting for a change to reach the nodes.
   */
  async probePairs(
    pairs: ReadonlyArray<readonly [PodId, PodId]>,
    port: number,
    protocol: Protocol,
    family: Family = 4,
  ): Promise<boolean[]> {
    const pods = readPods(this.lab.dir).pods;
    return Promise.all(
      pairs.map(async ([a, b]) => {
        if (!pods[a] || !pods[b]) throw new Error(`${a} or ${b} is not a lab pod`);
        return (await probeOne(pods[a], pods[b], { port, protocol, family, timeoutMs: this.timeoutMs })).connected;
      }),
    );
  }

  /** Polls `pairs` until each shows `want(pair)`; false after the deadline. */
  private async waitPairs(
    pairs: ReadonlyArray<readonly [PodId, PodId]>,
    want: (a: PodId, b: PodId) => boolean,
    port: number,
    protocol: Protocol,
    family: Family,
    deadlineMs: number,
  ): Promise<boolean> {
    const t0 = Date.now();
    while (pairs.length > 0) {
      const got = await this.probePairs(pairs, port, protocol, family);
      if (got.every((v, i) => v === want(pairs[i][0], pairs[i][1]))) return true;
      if (Date.now() - t0 > deadlineMs) return false;
      await sleep(100);
    }
    return true;
  }

  /**
   * Waits until a change is in force on every node, then judges one `lab matrix`.
   *
   * The pairs whose expectation differs from the last one checked on this port and protocol are
   * the sentinels: they are probed until every one shows its new value (whichever node enforces
   * it). Then the matrix is taken once and every pair must match, with no second chance, so a
   * pair that only sometimes connects, or a rule that is only sometimes enforced, fails.
   */
  async check(
    expected: Reachability,
    port: number,
    protocol: Protocol = "TCP",
    family: Family = 4,
    deadlineMs = 20_000,
  ): Promise<MatrixCheck> {
    const key = `${protocol}/${port}/IPv${family}`;
    const prev = this.known.get(key) ?? new Reachability(expected.pods, true);
    const sentinels = expected.pods.flatMap((a) =>
      expected.pods.filter((b) => a !== b && prev.get(a, b) !== expected.get(a, b)).map((b) => [a, b] as const),
    );
    const t0 = Date.now();
    const inForce = await this.waitPairs(sentinels, (a, b) => expected.get(a, b), port, protocol, family, deadlineMs);
    const convergedMs = inForce ? Date.now() - t0 : null;
    const m = await this.matrix(port, protocol, family);
    if (inForce) this.known.set(key, expected);
    else this.known.delete(key);
    const head = inForce
      ? `${key} (! = differs from the expectation)`
      : `${key}: not in force after ${deadlineMs} ms (! = differs)`;
    return { matrix: m, diff: expected.diff(m), convergedMs, table: `${head}:\n${expected.table(m)}` };
  }

  /**
   * After every policy is deleted: waits until each pair blocked in the last checked expectations
   * connects again (a deleted policy restores connectivity), then expects everything to connect.
   */
  async waitRestored(deadlineMs = 20_000): Promise<void> {
    for (const [key, r] of this.known) {
      const [protocol, port, fam] = key.split("/") as [Protocol, string, string];
      const family: Family = fam === "IPv6" ? 6 : 4;
      const blocked = r.pods.flatMap((a) => r.pods.filter((b) => a !== b && !r.get(a, b)).map((b) => [a, b] as const));
      const ok = await this.waitPairs(blocked, () => true, Number(port), protocol, family, deadlineMs);
      if (!ok) {
        const still = await this.probePairs(blocked, Number(port), protocol, family);
        throw new Error(
          `${key}: still blocked ${deadlineMs} ms after the policies were deleted: ${blocked
            .filter((_, i) => !still[i])
            .map(([a, b]) => `${a} -> ${b}`)
            .join(", ")}`,
        );
      }
    }
    this.known.clear();
  }

  state() {
    const st = this.lab.state();
    if (!st) throw new Error("no lab state");
    return st;
  }

  nodeNetns(node: string): string {
    const n = this.state().nodes.find((x) => x.name === node);
    if (!n) throw new Error(`no node ${node}`);
    return `/run/netns/${n.netns}`;
  }

  podNetns(id: PodId): string {
    const [ns, name] = id.split("/");
    return `/run/netns/${this.names.podNetns(ns, name)}`;
  }

  /** A flow.js helper inside a network namespace; its JSON lines are collected. */
  startFlow(netns: string, args: string[]): Flow {
    const child = spawn("nsenter", [`--net=${netns}`, "--", process.execPath, FLOW, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, NODE_EXTRA_CA_CERTS: "" },
    });
    const flow = new Flow(child, () => this.flows.delete(flow));
    this.flows.add(flow);
    return flow;
  }

  /** Ends every helper this fixture started (by their own PIDs). */
  async stopFlows(): Promise<void> {
    await Promise.all([...this.flows].map((f) => f.stop()));
    this.flows.clear();
  }

  async down(): Promise<void> {
    await this.stopFlows();
    await this.lab.destroy();
  }
}

export class Flow {
  readonly lines: Json[] = [];
  private readonly listeners: Array<(l: Json) => void> = [];
  private readonly exited: Promise<void>;
  stderr = "";

  constructor(
    readonly child: ChildProcess,
    onExit: () => void,
  ) {
    if (child.stdout) {
      createInterface({ input: child.stdout }).on("line", (l) => {
        try {
          const j = JSON.parse(l) as Json;
          this.lines.push(j);
          for (const f of this.listeners) f(j);
        } catch {
          // not ours
        }
      });
    }
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (this.stderr += d));
    this.exited = new Promise<void>((res) => {
      if (child.exitCode !== null || child.signalCode !== null) res();
      else child.once("exit", () => res());
    }).then(onExit);
  }

  onLine(f: (l: Json) => void): void {
    this.listeners.push(f);
  }

  /** The first line that satisfies `pred` (already seen or still to come). */
  waitLine(pred: (l: Json) => boolean, timeoutMs: number): Promise<Json> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((res, rej) => {
      const timer = setTimeout(
        () => rej(new Error(`no matching line from the helper within ${timeoutMs} ms; stderr: ${this.stderr}`)),
        timeoutMs,
      );
      this.onLine((l) => {
        if (pred(l)) {
          clearTimeout(timer);
          res(l);
        }
      });
    });
  }

  /** SIGTERM (the helper prints its summary), then waits for the exit; SIGKILL after 3 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      // nsenter execs node, so the PID is the helper's own.
      this.child.kill("SIGTERM");
      const t = setTimeout(() => this.child.kill("SIGKILL"), 3000);
      await this.exited;
      clearTimeout(t);
    }
    await sleep(20); // the last lines of stdout
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
