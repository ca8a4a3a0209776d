// The end-to-end world: a "host" network namespace running a real weft agent, the real plugin
// installed by `weft install-cni` into a temp bin/conf dir, and pod namespaces. Everything a
// fixture makes is registered for cleanup, which runs also when a test fails.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createConnection } from "node:net";
import type { AgentRequest } from "../agent/protocol.js";
import { run, runStatus } from "../kernel/exec.js";
import { REFERENCE_PLUGIN_DIR, type ConflistJson } from "../testlib/plugin.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
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

export async function addNetns(name: string): Promise<string> {
  await run(["ip", "netns", "add", name]);
  await run(["ip", "link", "set", "lo", "up"], { netns: `/run/netns/${name}` });
  return `/run/netns/${name}`;
}

export async function delNetns(name: string): Promise<void> {
  await run(["ip", "netns", "del", name]).catch(() => undefined);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface AgentProc {
  pid: number;
  child: ChildProcess;
  exited: Promise<number | null>;
}

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
  readonly nsName: string;
  readonly ns: string;
  readonly work: string;
  readonly socket: string;
  readonly stateDir: string;
  readonly binDir: string;
  readonly confDir: string;
  readonly podCidr: string;
  readonly name: string;
  readonly t = tag();
  agent: AgentProc | undefined;
  private readonly cleanup = new Cleanup();
  private pods = 0;

  private constructor(o: HostOptions) {
    this.nsName = `wt-h-${this.t}`;
    this.ns = `/run/netns/${this.nsName}`;
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
      await addNetns(h.nsName);
      h.cleanup.defer(() => delNetns(h.nsName));
      const args = ["install-cni", "--bin-dir", h.binDir, "--conf-dir", h.confDir, "--socket", h.socket, "--name", h.name];
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
  async pod(label = "p"): Promise<{ name: string; path: string }> {
    const name = `wt-${label}${this.pods++}-${this.t}`;
    const path = await addNetns(name);
    this.cleanup.defer(() => delNetns(name));
    return { name, path };
  }

  async startAgent(): Promise<void> {
    if (this.agent) throw new Error("agent already running");
    const child = spawn(
      "nsenter",
      [`--net=${this.ns}`, "--", process.execPath, CLI_MAIN, "agent", "--node", `node-${this.t}`, "--store", "local",
        "--state-dir", this.stateDir, "--socket", this.socket, "--pod-cidr", this.podCidr],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, NODE_EXTRA_CA_CERTS: "" } },
    );
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-4000)));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const agent: AgentProc = { pid: child.pid!, child, exited };
    this.agent = agent;
    let gone = false;
    void exited.then(() => (gone = true));
    for (let i = 0; i < 300; i++) {
      if (gone) break;
      if (existsSync(this.socket) && (await this.agentAnswers())) return;
      await sleep(50);
    }
    this.agent = undefined;
    if (!gone) process.kill(agent.pid, "SIGKILL");
    throw new Error(`agent did not come up on ${this.socket}: ${stderr.trim()}`);
  }

  /** One STATUS request over the plugin<->agent protocol: the agent is up when it answers. */
  private agentAnswers(): Promise<boolean> {
    return new Promise((resolve) => {
      const c = createConnection(this.socket);
      let buf = "";
      const done = (ok: boolean) => {
        c.destroy();
        resolve(ok);
      };
      c.setTimeout(2000, () => done(false));
      c.on("error", () => done(false));
      c.on("connect", () => c.write(JSON.stringify({ op: "status", network: this.name } satisfies AgentRequest) + "\n"));
      c.setEncoding("utf8").on("data", (d: string) => {
        buf += d;
        if (buf.includes("\n")) done(true);
      });
      c.on("end", () => done(buf.trim().length > 0));
    });
  }

  /** Ends the agent: SIGTERM (graceful) or SIGKILL (a crash). */
  async stopAgent(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const a = this.agent;
    if (!a) return;
    this.agent = undefined;
    if (a.child.exitCode !== null || a.child.signalCode !== null) return;
    process.kill(a.pid, signal);
    const t = setTimeout(() => a.child.exitCode === null && a.child.signalCode === null && process.kill(a.pid, "SIGKILL"), 5000);
    await a.exited;
    clearTimeout(t);
  }

  async ipamCheckRaw(fix = false): Promise<{ code: number; stdout: string; stderr: string }> {
    const args = ["ipam", "check", "--socket", this.socket, "-o", "json"];
    if (fix) args.push("--fix");
    return weft(args);
  }

  /** `weft ipam check -o json`, parsed; exit code alongside. */
  async ipamCheck(): Promise<{ code: number; report: IpamReport }> {
    const r = await this.ipamCheckRaw();
    if (r.code !== 0 && r.code !== 1) throw new Error(`weft ipam check exited ${r.code}: ${r.stderr}`);
    return { code: r.code, report: JSON.parse(r.stdout) as IpamReport };
  }

  /** Link names in the host netns (for "nothing left behind" checks). */
  async hostLinks(): Promise<string[]> {
    const links = JSON.parse(await run(["ip", "-j", "link", "show"], { netns: this.ns })) as Array<{ ifname: string }>;
    return links.map((l) => l.ifname).sort();
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
