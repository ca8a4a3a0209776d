// Helpers for the lab's tests: a lab with its own id (so a user's lab is never touched), the CLI
// run as users run it, Pods put into the lab store, and ground truth from independent tools.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runStatus } from "../kernel/exec.js";
import { openStore } from "../store/index.js";
import type { ClusterStore, StoredObject } from "../store/types.js";
import { labEtcdConnection } from "../lab/etcd.js";
import { readPods } from "../lab/pods-state.js";
import { isAlive, type ProcRef } from "../lab/procs.js";
import { readState, type LabState } from "../lab/state.js";
import { listNetns } from "../lab/topology.js";

// dist/testlib, or dist-bench/src/testlib when a benchmark (bench/) uses these helpers.
const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = [join(HERE, "..", ".."), join(HERE, "..", "..", "..")].find((d) =>
  existsSync(join(d, "package.json")),
)!;
export const CLI_MAIN = join(ROOT, "dist", "cli", "main.js");
export const WEFT_BIN = join(ROOT, "bin", "weft");

export function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (creates network namespaces)";
  if (!existsSync(join(ROOT, "dist", "weft-cni"))) return "dist/weft-cni is not built (npm run build)";
  if (!existsSync("/usr/bin/etcd")) return "etcd is not installed (Debian etcd-server)";
  return undefined;
}

/** `bin/weft lab ARGS` as a user runs it, for the lab with this id and directory. */
export function runLabCli(
  id: string,
  dir: string,
  args: string[],
  timeoutMs?: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runStatus(
    [
      "env",
      `WEFT_LAB_ID=${id}`,
      `WEFT_LAB_DIR=${dir}`,
      "NODE_EXTRA_CA_CERTS=",
      process.execPath,
      WEFT_BIN,
      "lab",
      ...args,
    ],
    timeoutMs === undefined ? {} : { timeoutMs },
  );
}

export class TestLab {
  readonly id = `wt-lab-${Math.random().toString(36).slice(2, 8)}`;
  readonly dir = `/run/${this.id}`;
  private store: ClusterStore | undefined;

  /** `bin/weft lab ARGS`, as a user runs it, with this lab's id. */
  async cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return runLabCli(this.id, this.dir, args);
  }

  state(): LabState | undefined {
    return readState(join(this.dir, "state.json"));
  }

  clusterStore(): ClusterStore {
    if (!this.store) {
      const st = this.state();
      if (!st) throw new Error("no lab state");
      this.store = openStore({ kind: "etcd", ...labEtcdConnection(st) });
    }
    return this.store;
  }

  objects(): ClusterStore["objects"] {
    return this.clusterStore().objects;
  }

  async applyPod(
    ns: string,
    name: string,
    o: { node?: string; ports?: Array<{ containerPort: number; protocol?: string }> } = {},
  ): Promise<void> {
    await this.objects().apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: ns, labels: { app: name } },
      spec: {
        ...(o.node ? { nodeName: o.node } : {}),
        containers: [
          {
            name: "main",
            image: "lab",
            ports: o.ports ?? [{ containerPort: 80 }, { containerPort: 53, protocol: "UDP" }],
          },
        ],
      },
    });
  }

  async waitRunning(ns: string, name: string, timeoutMs = 30_000): Promise<StoredObject> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const p = await this.objects().get({ kind: "Pod", namespace: ns, name });
      if ((p.status as { phase?: string } | undefined)?.phase === "Running") return p;
      if (Date.now() > until)
        throw new Error(
          `pod ${ns}/${name} not Running after ${timeoutMs} ms: ${JSON.stringify(p.status)}; kubelet log: ${this.kubeletLog()}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  kubeletLog(): string {
    try {
      return readFileSync(join(this.dir, "kubelet", "kubelet.log"), "utf8").slice(-2000);
    } catch {
      return "(none)";
    }
  }

  /** Every process the lab recorded (etcd, agents, kubelet, pod servers). */
  recordedProcs(): ProcRef[] {
    const st = this.state();
    if (!st) return [];
    const pods = existsSync(this.dir)
      ? Object.values(readPods(this.dir).pods).flatMap((p) => (p.server ? [p.server] : []))
      : [];
    return [
      ...st.etcd.flatMap((m) => (m.proc ? [m.proc] : [])),
      ...st.nodes.flatMap((n) => (n.agent ? [n.agent] : [])),
      ...(st.kubelet ? [st.kubelet] : []),
      ...pods,
    ];
  }

  async namespaces(): Promise<string[]> {
    return (await listNetns()).filter((n) => n.startsWith(`${this.id}-`));
  }

  async close(): Promise<void> {
    await this.store?.close().catch(() => undefined);
    this.store = undefined;
  }

  /** Last resort after a failed test: the lab's own `down`. */
  async destroy(): Promise<void> {
    await this.close();
    await this.cli(["down"]);
  }
}

export function alive(procs: readonly ProcRef[]): ProcRef[] {
  return procs.filter((p) => isAlive(p));
}

/** Ground truth without the lab's probe code: socat from inside the source namespace. */
export async function socatTcp(netns: string, host: string, port: number): Promise<boolean> {
  const target = host.includes(":") ? `TCP6:[${host}]:${port}` : `TCP4:${host}:${port}`;
  const r = await runStatus(["timeout", "5", "socat", "-u", "/dev/null", `${target},connect-timeout=0.5`], {
    netns: `/run/netns/${netns}`,
  });
  return r.code === 0;
}

/** UDP ground truth: a datagram goes out and the same bytes come back. */
export async function socatUdpEcho(netns: string, host: string, port: number): Promise<boolean> {
  const target = host.includes(":") ? `UDP6:[${host}]:${port}` : `UDP4:${host}:${port}`;
  const word = `truth-${Math.random().toString(36).slice(2)}`;
  const r = await runStatus(["timeout", "5", "socat", "-T", "0.5", "-", target], {
    netns: `/run/netns/${netns}`,
    input: word,
  });
  return r.stdout.includes(word);
}
