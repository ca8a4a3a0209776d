// Drives a lab from tests the way a user does: every action goes through `bin/weft` (lab up/down,
// apply, get, lab matrix/exec) with this lab's own id, so a lab someone is using is never touched.
// The only things read directly are the lab's state file (PIDs to kill, as the brief of a fault
// test says a user would) and the kubelet's log.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runStatus } from "../../kernel/exec.js";
import { cidrHas, cidrOrNull } from "../../net/cidr.js";
import { parseIp } from "../../net/ip.js";
import { readState, type LabState } from "../../lab/state.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const WEFT_BIN = join(ROOT, "bin", "weft");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface PodSpec {
  ns?: string;
  name: string;
  node?: string;
}

export type Matrix = Record<string, Record<string, boolean>>;

interface PodJson {
  metadata: { name: string; namespace?: string };
  spec?: { nodeName?: string };
  status?: {
    phase?: string;
    podIP?: string;
    podIPs?: Array<{ ip: string }>;
    hostIP?: string;
    conditions?: Array<{ type: string; status: string; message?: string }>;
  };
}

export interface NodeJson {
  metadata: { name: string };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: {
    addresses?: Array<{ type: string; address: string }>;
    conditions?: Array<{ type: string; status: string }>;
  };
}

/** Why the cluster e2e tests cannot run here, or undefined. */
export function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (the lab creates network namespaces)";
  if (!existsSync(join(ROOT, "dist", "cli", "main.js"))) return "dist/ is not built (npx tsc -p .)";
  if (!existsSync(join(ROOT, "dist", "weft-cni"))) return "dist/weft-cni is not built (npm run build)";
  if (!existsSync("/usr/bin/etcd")) return "etcd is not installed (Debian etcd-server)";
  return undefined;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ClusterLab {
  readonly id = `wt-lab-${Math.random().toString(36).slice(2, 8)}`;
  readonly dir = `/run/${this.id}`;
  private readonly bg = new Set<ChildProcess>();

  private env(): string[] {
    // NODE_EXTRA_CA_CERTS slows every node start-up; a user's shell does not have it.
    return ["env", `WEFT_LAB_ID=${this.id}`, `WEFT_LAB_DIR=${this.dir}`, "NODE_EXTRA_CA_CERTS="];
  }

  /** `bin/weft ARGS` with this lab's id. */
  weft(args: string[], input?: string): Promise<CliResult> {
    return runStatus([...this.env(), process.execPath, WEFT_BIN, ...args], input === undefined ? {} : { input });
  }

  /** `bin/weft ARGS`, failing with the command's own error when it exits non-zero. */
  async weftOk(args: string[], input?: string): Promise<string> {
    const r = await this.weft(args, input);
    if (r.code !== 0) throw new Error(`weft ${args.join(" ")} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** `bin/weft ARGS` in the background (e.g. a long `lab exec`); ended by stopBackground(). */
  spawnWeft(args: string[]): { child: ChildProcess; done: Promise<CliResult> } {
    const [cmd, ...rest] = [...this.env(), process.execPath, WEFT_BIN, ...args];
    const child = spawn(cmd, rest, { stdio: ["ignore", "pipe", "pipe"] });
    this.bg.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const done = new Promise<CliResult>((resolve) => {
      child.on("close", (code, signal) => {
        this.bg.delete(child);
        resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
    });
    return { child, done };
  }

  async up(args: string[]): Promise<void> {
    await this.weftOk(["lab", "up", ...args]);
  }

  /** Always called from after(): ends our background commands, then the lab's own `down`. */
  async down(): Promise<void> {
    for (const c of this.bg) if (c.pid) c.kill("SIGKILL");
    if (existsSync(this.dir)) {
      const r = await this.weft(["lab", "down"]);
      if (r.code !== 0) throw new Error(`lab down failed: ${r.stderr}`);
    }
  }

  state(): LabState {
    const s = readState(join(this.dir, "state.json"));
    if (!s) throw new Error(`no lab state in ${this.dir}`);
    return s;
  }

  agentPid(node: string): number {
    const pid = this.state().nodes.find((n) => n.name === node)?.agent?.pid;
    if (!pid) throw new Error(`the lab state has no agent PID for ${node}`);
    return pid;
  }

  async applyPods(pods: PodSpec[]): Promise<void> {
    const docs = pods.map((p) =>
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: p.name, namespace: p.ns ?? "default", labels: { app: p.name } },
        spec: {
          ...(p.node ? { nodeName: p.node } : {}),
          containers: [
            { name: "main", image: "lab", ports: [{ containerPort: 80 }, { containerPort: 53, protocol: "UDP" }] },
          ],
        },
      }),
    );
    await this.weftOk(
      ["apply", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: docs.map((d) => JSON.parse(d) as unknown) }),
    );
  }

  async pods(): Promise<PodJson[]> {
    return (JSON.parse(await this.weftOk(["get", "pods", "-A", "-o", "json"])) as { items: PodJson[] }).items;
  }

  async pod(ns: string, name: string): Promise<PodJson> {
    return JSON.parse(await this.weftOk(["get", "pod", name, "-n", ns, "-o", "json"])) as PodJson;
  }

  async nodes(): Promise<NodeJson[]> {
    return (JSON.parse(await this.weftOk(["get", "nodes", "-o", "json"])) as { items: NodeJson[] }).items;
  }

  /** Waits until every named pod (ns/name) shows phase Running in `get pods`. */
  async waitRunning(keys: string[], timeoutMs = 60_000): Promise<PodJson[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const all = await this.pods();
      const byKey = new Map(all.map((p) => [`${p.metadata.namespace ?? "default"}/${p.metadata.name}`, p]));
      const missing = keys.filter((k) => byKey.get(k)?.status?.phase !== "Running");
      if (missing.length === 0) return keys.map((k) => byKey.get(k)!);
      if (Date.now() > until) {
        throw new Error(
          `not Running after ${timeoutMs} ms: ${missing.map((k) => `${k} ${JSON.stringify(byKey.get(k)?.status)}`).join("; ")}\nkubelet log: ${this.kubeletLog().slice(-1500)}`,
        );
      }
      await sleep(500);
    }
  }

  async matrix(args: string[]): Promise<{ port: number; protocol: string; matrix: Matrix }> {
    return JSON.parse(await this.weftOk(["lab", "matrix", "--timeout-ms", "2000", ...args, "-o", "json"])) as {
      port: number;
      protocol: string;
      matrix: Matrix;
    };
  }

  /** `lab exec NODE -- ip -j route` (or -6). */
  async routes(node: string, family: 4 | 6 = 4): Promise<Array<{ dst: string; dev?: string; gateway?: string }>> {
    return JSON.parse(await this.weftOk(["lab", "exec", node, "--", "ip", `-${family}`, "-j", "route"])) as Array<{
      dst: string;
      dev?: string;
      gateway?: string;
    }>;
  }

  async fdb(node: string): Promise<Array<{ mac: string; ifname?: string; dst?: string }>> {
    return JSON.parse(await this.weftOk(["lab", "exec", node, "--", "bridge", "-j", "fdb", "show"])) as Array<{
      mac: string;
      ifname?: string;
      dst?: string;
    }>;
  }

  kubeletLog(): string {
    try {
      return readFileSync(join(this.dir, "kubelet", "kubelet.log"), "utf8");
    } catch {
      return "(no kubelet log)";
    }
  }

  agentLog(node: string): string {
    try {
      return readFileSync(join(this.dir, node, "agent.log"), "utf8").slice(-3000);
    } catch {
      return "(no agent log)";
    }
  }
}

/** The pairs of a matrix that are not connected, as "from -> to" (empty when all connected). */
export function unconnected(m: Matrix): string[] {
  return Object.entries(m).flatMap(([from, row]) =>
    Object.entries(row)
      .filter(([, ok]) => !ok)
      .map(([to]) => `${from} -> ${to}`),
  );
}

/** Every pod key appears as a source and as a destination. */
export function matrixKeys(m: Matrix): { from: string[]; to: string[] } {
  const from = Object.keys(m).sort();
  const to = [...new Set(Object.values(m).flatMap((r) => Object.keys(r)))].sort();
  return { from, to };
}

/** Is addr inside cidr (IPv4 or IPv6)? */
export function inCidr(addr: string, cidr: string): boolean {
  const a = parseIp(addr);
  const c = cidrOrNull(cidr, { hostBits: "clear" });
  return a !== null && c !== null && cidrHas(c, a);
}
