// A lab of real nodes (`weft lab up --kubelet real`) for tests: its own id, the CLI as users run
// it, kubectl 1.20 on the lab's kubeconfig, and what the machine looked like before, so the test
// can prove `lab down` left nothing behind.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runStatus } from "../../kernel/exec.js";
import { binaries } from "../../lab/realnode/host.js";
import { imageArchives } from "../../lab/realnode/images.js";
import { NODE_BINDS, KUBELET_SYSCTLS, readSysctls } from "../../lab/realnode/host.js";
import { readState, type LabState } from "../../lab/state.js";
import { listNetns } from "../../lab/topology.js";
import { kubectlBinary } from "../../testlib/kubectl.js";
import { runLabCli } from "../../testlib/lab.js";
import { PROBER, proberArgs, type ProbeResult } from "../../testlib/prober.js";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Why the suite cannot run at all (not root). Missing components are a failure, not a skip. */
export function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network and mount namespaces, cgroups)";
  return undefined;
}

/** Throws, saying what to build, when a component is missing. */
export function requireComponents(): void {
  binaries();
  imageArchives();
  if (!existsSync(kubectlBinary())) throw new Error(`${kubectlBinary()} is missing: bash scripts/setup.sh`);
}

export interface NodeJson {
  metadata: { name: string };
  spec?: { podCIDR?: string; podCIDRs?: string[]; taints?: Array<{ key: string; effect: string }> };
  status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}

export interface PodJson {
  metadata: { name: string; namespace: string };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string; podIPs?: Array<{ ip: string }> };
}

/** The machine's state the lab must leave as it found it. */
export interface HostSnapshot {
  sysctls: Record<string, string>;
  existing: Record<string, boolean>;
  netns: string[];
}

export function hostSnapshot(): HostSnapshot {
  const existing: Record<string, boolean> = {};
  for (const b of NODE_BINDS) {
    const parts = b.target.split("/").filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const p = `/${parts.slice(0, i).join("/")}`;
      existing[p] = existsSync(p);
    }
  }
  const netns = existsSync("/run/netns") ? readdirSync("/run/netns").sort() : [];
  return { sysctls: readSysctls(), existing, netns };
}

export { KUBELET_SYSCTLS };

export class RealLab {
  readonly id = `rl-${Math.random().toString(36).slice(2, 8)}`;
  readonly dir = `/run/${this.id}`;

  async cli(args: string[], timeoutMs = 600_000): Promise<{ code: number; stdout: string; stderr: string }> {
    return runLabCli(this.id, this.dir, args, timeoutMs);
  }

  async up(args: string[]): Promise<void> {
    const r = await this.cli(["up", "--kubelet", "real", ...args]);
    if (r.code !== 0) throw new Error(`lab up failed (${r.code}): ${r.stderr}`);
  }

  async down(): Promise<{ code: number; stderr: string }> {
    return this.cli(["down"]);
  }

  state(): LabState {
    const st = readState(join(this.dir, "state.json"));
    if (!st) throw new Error("no lab state");
    return st;
  }

  async kubectl(args: string[], input?: string): Promise<string> {
    const st = this.state();
    const r = await runStatus([kubectlBinary(), "--kubeconfig", st.apiserver!.kubeconfig, ...args], {
      ...(input === undefined ? {} : { input }),
    });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  async nodes(): Promise<NodeJson[]> {
    return (JSON.parse(await this.kubectl(["get", "nodes", "-o", "json"])) as { items: NodeJson[] }).items;
  }

  async pods(): Promise<PodJson[]> {
    return (JSON.parse(await this.kubectl(["get", "pods", "-A", "-o", "json"])) as { items: PodJson[] }).items;
  }

  log(file: string, chars = 3000): string {
    try {
      return readFileSync(join(this.dir, file), "utf8").slice(-chars);
    } catch {
      return "(none)";
    }
  }

  /** Polls cond until it returns a value (not undefined), or throws with what was last seen. */
  async waitFor<T>(
    what: string,
    cond: () => Promise<T | undefined>,
    timeoutMs: number,
    seen: () => string = () => "",
  ): Promise<T> {
    const until = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      try {
        const v = await cond();
        if (v !== undefined) return v;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms. ${last} ${seen()}`);
      await sleep(250);
    }
  }

  /** What the lab left on the machine after `lab down` (empty when nothing). */
  async leftovers(before: HostSnapshot): Promise<string[]> {
    const out: string[] = [];
    if (existsSync(this.dir)) out.push(`lab directory ${this.dir}`);
    for (const ns of await listNetns()) if (ns.startsWith(this.id)) out.push(`netns ${ns}`);
    for (const ns of existsSync("/run/netns") ? readdirSync("/run/netns") : [])
      if (ns.startsWith("cni-") && !before.netns.includes(ns)) out.push(`/run/netns/${ns}`);
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const mp = line.split(" ")[4];
      if (mp && (mp.startsWith(this.dir) || mp.includes("kubelet"))) out.push(`mount ${mp}`);
    }
    for (const h of readdirSync("/sys/fs/cgroup")) {
      const d = join("/sys/fs/cgroup", h);
      try {
        for (const e of readdirSync(d)) if (e.startsWith(this.id)) out.push(`cgroup ${join(d, e)}`);
      } catch {
        // not a directory
      }
    }
    for (const ent of readdirSync("/proc")) {
      if (!/^[0-9]+$/.test(ent)) continue;
      try {
        const cmd = readFileSync(`/proc/${ent}/cmdline`, "utf8");
        if (cmd.includes(this.dir)) out.push(`process ${ent}: ${cmd.replace(/\0/g, " ").slice(0, 120)}`);
        // The kubelet's cgroup paths name the lab's cgroup root: a container left running.
        const cg = readFileSync(`/proc/${ent}/cgroup`, "utf8");
        if (cg.includes(`/${this.id}-`)) out.push(`process ${ent} in the lab's cgroups`);
      } catch {
        // gone
      }
    }
    const now = readSysctls();
    for (const k of KUBELET_SYSCTLS)
      if (now[k] !== before.sysctls[k]) out.push(`sysctl ${k}=${now[k]} (was ${before.sysctls[k]})`);
    for (const [p, had] of Object.entries(before.existing)) if (!had && existsSync(p)) out.push(`made ${p}`);
    return out;
  }
}

/**
 * A new-connection prober (testlib/prober.ts) in each pod, to every other pod's IP:PORT, run with
 * `lab exec`. wait() resolves once each has 20 successes; stop() ends them and returns their counts.
 */
export function startProbers(
  lab: RealLab,
  pods: ReadonlyArray<{ key: string; ip: string }>,
  o: { port: number; intervalMs: number; timeoutMs: number; dir: string; tag: string },
): {
  ready(): Promise<void>;
  stop(): Promise<Array<ProbeResult & { from: string }>>;
} {
  const stopFile = join(o.dir, `${o.tag}.stop`);
  const probers = pods.map((p, k) => {
    const files = { ready: join(o.dir, `${o.tag}-${k}.ready`), out: join(o.dir, `${o.tag}-${k}.out`) };
    const targets = pods.filter((_, j) => j !== k).map((x) => `${x.ip}:${o.port}`);
    const args = proberArgs(targets, { intervalMs: o.intervalMs, timeoutMs: o.timeoutMs, stop: stopFile, ...files });
    const done = lab.cli(["exec", p.key, "--", process.execPath, "-e", PROBER, ...args], 900_000);
    return { from: p.key, ...files, done };
  });
  return {
    ready: async () => {
      for (const pr of probers)
        await lab.waitFor(
          `the prober in ${pr.from} reaching the other pods`,
          async () => (existsSync(pr.ready) ? true : undefined),
          30_000,
        );
    },
    stop: async () => {
      writeFileSync(stopFile, "");
      return Promise.all(
        probers.map(async (pr) => {
          const r = await pr.done;
          try {
            return { ...(JSON.parse(readFileSync(pr.out, "utf8")) as ProbeResult), from: pr.from };
          } catch {
            throw new Error(`the prober in ${pr.from} wrote no result (exit ${r.code}): ${r.stderr.slice(-500)}`);
          }
        }),
      );
    },
  };
}

/** What changed in a node's kernel while watched: route, neighbour and link events, the VTEP's identity. */
export interface KernelWatch {
  node: string;
  /** Every event line (ip -ts monitor link route neigh). */
  lines: string[];
  /** Routes, neighbours or links deleted. */
  deleted: string[];
  /** The vxlan device before and after: a changed ifindex is a recreated device. */
  vtep: { before?: string; after?: string };
}

/** `ip -ts monitor` in every lab node's namespace; stop() returns what each saw. */
export async function watchNodeKernels(lab: RealLab): Promise<{ stop(): Promise<KernelWatch[]> }> {
  const nodes = lab.state().nodes;
  const nsPath = (n: { netns: string }) => (n.netns.startsWith("/") ? n.netns : `/run/netns/${n.netns}`);
  const vtep = async (n: { netns: string }): Promise<string | undefined> => {
    const r = await runStatus(["ip", "-j", "link", "show", "type", "vxlan"], { netns: nsPath(n) });
    const [l] =
      r.code === 0 ? (JSON.parse(r.stdout || "[]") as Array<{ ifindex: number; ifname: string; address: string }>) : [];
    return l ? `${l.ifname} ifindex ${l.ifindex} ${l.address}` : undefined;
  };
  const watches = await Promise.all(
    nodes.map(async (n) => {
      const w: KernelWatch & { proc: ChildProcess } = {
        node: n.name,
        lines: [],
        deleted: [],
        vtep: { before: await vtep(n) },
        proc: spawn("nsenter", [`--net=${nsPath(n)}`, "--", "ip", "-ts", "monitor", "link", "route", "neigh"], {
          stdio: ["ignore", "pipe", "ignore"],
        }),
      };
      let buf = "";
      w.proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
        buf += d;
        const parts = buf.split("\n");
        buf = parts.pop()!;
        w.lines.push(...parts.filter(Boolean));
      });
      return w;
    }),
  );
  return {
    stop: async () =>
      Promise.all(
        watches.map(async (w) => {
          const gone = new Promise((r) => w.proc.once("exit", r));
          w.proc.kill();
          await gone;
          const n = nodes.find((x) => x.name === w.node)!;
          return {
            node: w.node,
            lines: w.lines,
            deleted: w.lines.filter((l) => /^\[[^\]]*\]\s*Deleted /.test(l)),
            vtep: { ...w.vtep, after: await vtep(n) },
          };
        }),
      ),
  };
}
