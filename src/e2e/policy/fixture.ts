// Test fixture for the policy controller on a real kernel: a "node" network namespace with pod
// namespaces behind routed wf* veths (as the agent wires them), a local store holding the
// Kubernetes objects, and the probe tool running inside pod namespaces.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNetns, type TestNetns } from "../../testlib/netns.js";
import { wireRoutedPod } from "../../testlib/routed-pod.js";
import { localStorePath, openLocalStore } from "../../store/local/index.js";
import type { ClusterStore, ObjectInput } from "../../store/types.js";
import type { LocalPod } from "../../policy/index.js";
import { PolicyController } from "../../policy-agent/controller.js";

export const NODE = "node1";
const PROBE_TOOL = fileURLToPath(new URL("./probe-tool.js", import.meta.url));
const CLI = fileURLToPath(new URL("./cli-entry.js", import.meta.url));

export interface PodDef {
  ns: string;
  name: string;
  v4: string;
  v6: string;
  ifname: string;
  labels: Record<string, string>;
}

export interface WiredPod extends PodDef {
  netns: TestNetns;
}

export interface Proc {
  child: ChildProcess;
  lines: Array<Record<string, string | number>>;
  stop(): Promise<void>;
}

export class PolicyFixture {
  readonly procs = new Set<ChildProcess>();
  readonly wired = new Map<string, WiredPod>();
  private readonly namespaces: TestNetns[] = [];

  private constructor(
    readonly node: TestNetns,
    readonly stateDir: string,
    readonly store: ClusterStore,
  ) {}

  static async create(): Promise<PolicyFixture> {
    const node = await createNetns("pa");
    await node.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await node.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    const stateDir = await mkdtemp(join(tmpdir(), "weft-pa-"));
    const store = openLocalStore({ path: localStorePath(stateDir) });
    const f = new PolicyFixture(node, stateDir, store);
    f.namespaces.push(node);
    return f;
  }

  controller(): PolicyController {
    return new PolicyController({
      node: NODE,
      netns: this.node.path,
      objects: this.store.objects,
      localPods: () => [...this.wired.values()].map(localPod),
      debounceMs: 5,
    });
  }

  async apply(obj: ObjectInput): Promise<void> {
    await this.store.objects.apply(obj);
  }

  async namespace(name: string, labels: Record<string, string>): Promise<void> {
    await this.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });
  }

  /** The Pod object, scheduled here, with its addresses in status (as the kubelet reports them). */
  async podObject(p: PodDef, labels = p.labels): Promise<void> {
    await this.apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: p.name, namespace: p.ns, labels },
      spec: {
        nodeName: NODE,
        containers: [
          {
            name: "srv",
            ports: [
              { name: "udp-main", containerPort: 7000, protocol: "UDP" },
              { name: "tcp-main", containerPort: 7000 },
            ],
          },
        ],
      },
    });
    await this.store.objects.updateStatus(
      { kind: "Pod", namespace: p.ns, name: p.name },
      { phase: "Running", podIP: p.v4, podIPs: [{ ip: p.v4 }, { ip: p.v6 }], hostIP: "192.168.0.1" },
    );
  }

  /** A pod namespace behind a routed wf* veth in the node namespace (the agent's wiring). */
  async wire(p: PodDef): Promise<WiredPod> {
    const pod = await wireRoutedPod(this.node, p.ifname, p.v4, p.v6);
    this.namespaces.push(pod);
    const w = { ...p, netns: pod };
    this.wired.set(`${p.ns}/${p.name}`, w);
    return w;
  }

  private tool(pod: WiredPod, argv: string[]): Proc {
    const child = spawn("nsenter", [`--net=${pod.netns.path}`, "--", process.execPath, PROBE_TOOL, ...argv], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.procs.add(child);
    const lines: Proc["lines"] = [];
    let buf = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(buf.slice(0, i)) as Record<string, string | number>);
        buf = buf.slice(i + 1);
      }
    });
    const closed = new Promise<void>((r) => child.once("close", () => r()));
    return {
      child,
      lines,
      stop: async () => {
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null)
          process.kill(child.pid, "SIGTERM");
        await closed;
        this.procs.delete(child);
      },
    };
  }

  async serve(pod: WiredPod, ports: number[]): Promise<Proc> {
    const p = this.tool(pod, ["serve", "--ports", ports.join(",")]);
    await until(() => p.lines.some((l) => l.ev === "ready"), 10_000, `server in ${pod.ns}/${pod.name} did not start`);
    return p;
  }

  async sender(
    from: WiredPod,
    to: string,
    port: number,
    proto: "udp" | "tcp" | "both",
    intervalMs: number,
  ): Promise<Proc> {
    const p = this.tool(from, [
      "send",
      "--to",
      to,
      "--port",
      String(port),
      "--proto",
      proto,
      "--interval-ms",
      String(intervalMs),
    ]);
    await until(() => p.lines.some((l) => l.ev === "ready"), 10_000, `sender in ${from.ns}/${from.name} did not start`);
    return p;
  }

  /** One probe: true when the destination answered. */
  async once(from: WiredPod, to: string, port: number, proto: "udp" | "tcp", timeoutMs = 800): Promise<boolean> {
    const r = await from.netns.status([
      process.execPath,
      PROBE_TOOL,
      "once",
      "--to",
      to,
      "--port",
      String(port),
      "--proto",
      proto,
      "--timeout-ms",
      String(timeoutMs),
    ]);
    return r.code === 0;
  }

  /** Runs the policy CLI (explain, policy show) against this fixture's store. */
  async cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const c = spawn(process.execPath, [CLI, ...argv, "--store", "local", "--state-dir", this.stateDir], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "",
        stderr = "";
      c.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      c.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      c.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  }

  async counter(name: string): Promise<number> {
    const r = await this.node.status(["nft", "-j", "list", "counter", "inet", "weft", name]);
    if (r.code !== 0) return 0;
    const j = JSON.parse(r.stdout) as { nftables: Array<{ counter?: { packets: number } }> };
    return j.nftables.find((x) => x.counter)?.counter?.packets ?? 0;
  }

  async cleanup(): Promise<void> {
    for (const c of this.procs)
      if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) process.kill(c.pid, "SIGTERM");
    this.procs.clear();
    await this.store.close().catch(() => undefined);
    await Promise.all(this.namespaces.map((n) => n.remove()));
    await rm(this.stateDir, { recursive: true, force: true });
  }
}

export function localPod(p: PodDef): LocalPod {
  return { namespace: p.ns, name: p.name, ifname: p.ifname, ips: [p.v4, p.v6] };
}

export async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
