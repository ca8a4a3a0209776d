// The end-to-end world: a "host" network namespace running a real weft agent, the real plugin
// installed by `weft install-cni` into a temp bin/conf dir, and pod namespaces. Everything a
// fixture makes is registered for cleanup, which runs also when a test fails.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNetns, type TestNetns } from "../../testlib/netns.js";
import { startTestAgent, type TestAgent } from "../../testlib/agent.js";
import { run, runStatus } from "../../kernel/exec.js";
import { cidrHas, cidrOrNull } from "../../net/cidr.js";
import { parseIp } from "../../net/ip.js";
import { REFERENCE_PLUGIN_DIR, type ConflistJson } from "../../testlib/plugin.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const WEFT_BIN = join(ROOT, "bin", "weft");
export const CLI_MAIN = join(ROOT, "dist", "cli", "main.js");
export const BUILT_PLUGIN = join(ROOT, "dist", "weft-cni");

/** Why the e2e suites cannot run here, or undefined when they can. */
export function e2eSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (creates network namespaces)";
  if (!existsSync(BUILT_PLUGIN)) return "dist/weft-cni is not built (npm run build)";
  if (!existsSync(CLI_MAIN)) return "dist/cli/main.js is not built (npx tsc -p .)";
  return undefined;
}

export function tag(): string {
  return Math.random().toString(36).slice(2, 8);
}

/** Cleanup actions, run newest first; errors are collected, not thrown midway. */
export class Cleanup {
  private readonly fns: Array<() => Promise<unknown> | unknown> = [];
  defer(fn: () => Promise<unknown> | unknown): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    while (this.fns.length) {
      const fn = this.fns.pop()!;
      try {
        await fn();
      } catch {
        // best effort: the rest must still run
      }
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface HostOptions {
  podCidr?: string;
  /** Network name in the installed conflist. */
  name?: string;
  portmap?: boolean;
}

export interface IpamReport {
  allocations: number;
  leaked: unknown[];
  conflicts: unknown[];
}

/** A node: its netns, its agent, and the plugin installed as a runtime would find it. */
export class Host {
  readonly work: string;
  readonly socket: string;
  readonly stateDir: string;
  readonly binDir: string;
  readonly confDir: string;
  readonly podCidr: string;
  readonly name: string;
  readonly node = `node-${tag()}`;
  netns!: TestNetns;
  agent: TestAgent | undefined;
  private readonly cleanup = new Cleanup();

  private constructor(o: HostOptions) {
    this.work = mkdtempSync(join(tmpdir(), "weft-e2e-"));
    this.socket = join(this.work, "weft.sock");
    this.stateDir = join(this.work, "state");
    this.binDir = join(this.work, "bin");
    this.confDir = join(this.work, "net.d");
    this.podCidr = o.podCidr ?? "10.244.0.0/24";
    this.name = o.name ?? "weft";
  }

  static async open(o: HostOptions = {}): Promise<Host> {
    const h = new Host(o);
    h.cleanup.defer(() => rmSync(h.work, { recursive: true, force: true }));
    try {
      h.netns = await createNetns("h");
      h.cleanup.defer(() => h.netns.remove());
      const args = [
        "install-cni",
        "--bin-dir",
        h.binDir,
        "--conf-dir",
        h.confDir,
        "--socket",
        h.socket,
        "--name",
        h.name,
      ];
      if (o.portmap === false) args.push("--no-portmap");
      const r = await weft(args);
      if (r.code !== 0) throw new Error(`install-cni failed: ${r.stderr}`);
      h.cleanup.defer(() => h.stopAgent());
      await h.startAgent();
    } catch (e) {
      await h.close();
      throw e;
    }
    return h;
  }

  /** The host netns path (/run/netns/...): where the runtime, the plugin and the agent run. */
  get ns(): string {
    return this.netns.path;
  }

  /** CNI_PATH: weft's bin dir first, then the reference plugins. */
  get cniPath(): string[] {
    return [this.binDir, REFERENCE_PLUGIN_DIR];
  }

  get plugin(): string {
    return join(this.binDir, "weft");
  }

  /** The conflist install-cni wrote. */
  conflist(): ConflistJson {
    return JSON.parse(readFileSync(join(this.confDir, "10-weft.conflist"), "utf8")) as ConflistJson;
  }

  /** A network config for the weft plugin alone, as one plugin of a list sees it. */
  weftConf(cniVersion: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { cniVersion, name: this.name, type: "weft", socket: this.socket, ...extra };
  }

  /** A fresh pod network namespace, removed at close(). */
  async pod(label = "p"): Promise<TestNetns> {
    const ns = await createNetns(label);
    this.cleanup.defer(() => ns.remove());
    return ns;
  }

  /** Starts the agent (again) on the same state dir and socket, in the host netns. */
  async startAgent(): Promise<void> {
    if (this.agent) throw new Error("agent already running");
    this.agent = await startTestAgent({
      netns: this.ns,
      podCidr: this.podCidr,
      node: this.node,
      stateDir: this.stateDir,
      socket: this.socket,
    });
  }

  /** Ends the agent by PID: SIGTERM (graceful) or SIGKILL (a crash). */
  async stopAgent(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const a = this.agent;
    if (!a) return;
    this.agent = undefined;
    await a.kill(signal);
  }

  async ipamCheckRaw(fix = false): Promise<{ code: number; stdout: string; stderr: string }> {
    const args = ["ipam", "check", "--socket", this.socket, "-o", "json"];
    if (fix) args.push("--fix");
    return weft(args);
  }

  /** `weft ipam check -o json`, parsed; exit code alongside. */
  async ipamCheck(): Promise<{ code: number; report: IpamReport }> {
    const r = await this.ipamCheckRaw();
    let report: IpamReport | undefined;
    try {
      report = JSON.parse(r.stdout) as IpamReport;
    } catch {
      report = undefined;
    }
    if ((r.code !== 0 && r.code !== 1) || !report) {
      throw new Error(
        `weft ipam check exited ${r.code}: stdout ${JSON.stringify(r.stdout)} stderr ${JSON.stringify(r.stderr)}`,
      );
    }
    return { code: r.code, report };
  }

  /** Link names in the host netns (for "nothing left behind" checks). */
  async hostLinks(): Promise<string[]> {
    return linksIn(this.ns);
  }

  defer(fn: () => Promise<unknown> | unknown): void {
    this.cleanup.defer(fn);
  }

  async close(): Promise<void> {
    await this.cleanup.run();
  }
}

/** Runs `bin/weft ARGS` (the CLI as users run it). */
export function weft(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runStatus([process.execPath, CLI_MAIN, ...args]);
}

/** IPv4/IPv6 addresses (without prefix) on IFNAME inside NETNS, as `ip -j addr` shows them. */
export async function addressesIn(netns: string, ifname: string): Promise<string[]> {
  const out = await run(["ip", "-j", "addr", "show", "dev", ifname], { netns });
  const links = JSON.parse(out) as Array<{ addr_info?: Array<{ local: string; scope: string }> }>;
  return (links[0]?.addr_info ?? []).filter((a) => a.scope === "global").map((a) => a.local);
}

/** Whether an IPv4 address lies in an IPv4 CIDR. */
export function inCidr4(addr: string, cidr: string): boolean {
  const a = parseIp(addr);
  const c = cidrOrNull(cidr, { hostBits: "clear" });
  return a?.family === 4 && c !== null && cidrHas(c, a);
}

/** CNI_ARGS as kubelet sends them. */
export function k8sArgs(pod: string, ns = "default"): Record<string, string> {
  return { IgnoreUnknown: "1", K8S_POD_NAMESPACE: ns, K8S_POD_NAME: pod, K8S_POD_INFRA_CONTAINER_ID: pod };
}

/** A long-running process inside a netns (a test server), ended by PID. */
export interface NsProcess {
  pid: number;
  stop(): Promise<void>;
}

/** Starts a TCP echo server (socat ... PIPE) on PORT inside NETNS and waits until it listens. */
export async function startEchoServer(netns: string, port: number): Promise<NsProcess> {
  const child = spawn("nsenter", [`--net=${netns}`, "--", "socat", `TCP-LISTEN:${port},reuseaddr,fork`, "PIPE"], {
    stdio: "ignore",
  });
  const exited = new Promise<void>((r) => child.on("exit", () => r()));
  const proc: NsProcess = {
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid!, "SIGTERM");
        await exited;
      }
    },
  };
  for (let i = 0; i < 100; i++) {
    const out = await run(["ss", "-Hltn", `sport = :${port}`], { netns });
    if (out.trim()) return proc;
    await sleep(30);
  }
  await proc.stop();
  throw new Error(`echo server on port ${port} did not start`);
}

/** Sends TEXT to ADDR:PORT over TCP from inside NETNS; resolves with what came back ("" if nothing). */
export async function tcpEcho(netns: string, addr: string, port: number, text: string): Promise<string> {
  const target = addr.includes(":") ? `TCP6:[${addr}]:${port}` : `TCP4:${addr}:${port}`;
  const r = await runStatus(["timeout", "10", "socat", "-T3", "-", `${target},connect-timeout=3`], {
    netns,
    input: text,
  });
  return r.stdout;
}

/** One ping from inside NETNS (busybox ping: the machine has no iputils). */
export async function ping(netns: string, addr: string): Promise<boolean> {
  const r = await runStatus(["busybox", "ping", "-c", "1", "-W", "2", addr], { netns });
  return r.code === 0;
}

/** Link names inside a netns. */
export async function linksIn(netns: string): Promise<string[]> {
  const links = JSON.parse(await run(["ip", "-j", "link", "show"], { netns })) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname).sort();
}
