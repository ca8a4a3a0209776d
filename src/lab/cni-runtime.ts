// A small CNI runtime (libcni's part that execs plugins), used by the lab kubelet and the tests.
// Runs CNI plugins the way a container runtime does: CNI_* environment, network config on
// stdin, result or error JSON on stdout, inside the runtime's ("host") network namespace.
// Also drives a whole conflist like libcni: ADD in order passing prevResult, CHECK in order with
// the cached result, DEL in reverse order with the cached result.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { runStatus } from "../kernel/exec.js";
import type { CniCommand } from "../cni/types.js";

/** Where Debian's containernetworking-plugins live. */
export const REFERENCE_PLUGIN_DIR = "/usr/lib/cni";
/** A runtime's environment is not ours: only a PATH so plugins find iptables and friends. */
const RUNTIME_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface PluginCall {
  command: CniCommand;
  containerId?: string;
  /** The pod's netns path (CNI_NETNS); omitted for DEL-without-netns, VERSION, GC, STATUS. */
  netns?: string;
  ifname?: string;
  /** CNI_ARGS as key/value pairs, joined with ';'. */
  args?: Record<string, string>;
  /** CNI_PATH directories. */
  path?: string[];
  /** The network namespace the plugin runs in (the runtime's), e.g. /run/netns/wt-host-x. */
  runIn?: string;
  timeoutSec?: number;
}

export interface PluginOutput {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined when it was empty or not JSON. */
  json: unknown;
}

/** The error object a plugin prints on failure. */
export interface CniErrorOut {
  cniVersion?: string;
  code: number;
  msg: string;
  details?: string;
}

/** Runs one plugin executable with the given config on stdin. */
export async function invokePlugin(exe: string, call: PluginCall, config: unknown): Promise<PluginOutput> {
  const env: string[] = [`CNI_COMMAND=${call.command}`, `PATH=${RUNTIME_PATH}`];
  if (call.containerId !== undefined) env.push(`CNI_CONTAINERID=${call.containerId}`);
  if (call.netns !== undefined) env.push(`CNI_NETNS=${call.netns}`);
  if (call.ifname !== undefined) env.push(`CNI_IFNAME=${call.ifname}`);
  if (call.args && Object.keys(call.args).length) {
    env.push(
      `CNI_ARGS=${Object.entries(call.args)
        .map(([k, v]) => `${k}=${v}`)
        .join(";")}`,
    );
  }
  env.push(`CNI_PATH=${(call.path ?? [REFERENCE_PLUGIN_DIR]).join(":")}`);
  const secs = String(call.timeoutSec ?? 60);
  // env -i: nothing of the test runner's environment leaks into the plugin.
  const argv = ["env", "-i", ...env, "timeout", "-k", "5", secs, exe];
  const r = await runStatus(argv, { input: JSON.stringify(config), ...(call.runIn ? { netns: call.runIn } : {}) });
  let json: unknown;
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, json };
}

/** Like invokePlugin but throws, with the plugin's own words, unless it exited 0. */
export async function invokeOk(exe: string, call: PluginCall, config: unknown): Promise<unknown> {
  const r = await invokePlugin(exe, call, config);
  if (r.code !== 0) throw new PluginFailed(exe, call.command, r);
  return r.json;
}

export class PluginFailed extends Error {
  constructor(
    readonly exe: string,
    readonly command: string,
    readonly out: PluginOutput,
  ) {
    super(`${exe} ${command} exited ${out.code}: ${out.stdout.trim() || out.stderr.trim()}`);
    this.name = "PluginFailed";
  }
}

/** Finds a plugin executable by type in CNI_PATH order, as libcni does. */
export function findPlugin(type: string, path: string[]): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(type)) throw new Error(`bad plugin type "${type}"`);
  for (const dir of path) {
    const p = join(dir, type);
    if (existsSync(p)) return p;
  }
  throw new Error(`plugin "${type}" not found in ${path.join(":")}`);
}

export interface ConflistJson {
  cniVersion: string;
  cniVersions?: string[];
  name: string;
  disableCheck?: boolean;
  plugins: Array<{ type: string; capabilities?: Record<string, boolean>; [k: string]: unknown }>;
}

/** One attachment of a pod to a network, as a runtime tracks it. */
export interface Attachment {
  containerId: string;
  netns?: string;
  ifname: string;
  args?: Record<string, string>;
  /** Runtime capability arguments (portMappings, bandwidth, ...), handed only to plugins that declare them. */
  capabilityArgs?: Record<string, unknown>;
}

export interface ChainOptions {
  /** CNI_PATH: where plugin executables are found. */
  path: string[];
  /** The runtime's ("host") netns the plugins run in. */
  runIn?: string;
  /** Override the conflist's cniVersion (e.g. to exercise each version). */
  cniVersion?: string;
}

/** What a plugin in a chain sees on stdin: the list's name and version plus its own object. */
export function pluginConfig(
  list: ConflistJson,
  index: number,
  at: Attachment,
  opts: ChainOptions,
  prevResult?: unknown,
): Record<string, unknown> {
  const p = list.plugins[index];
  const conf: Record<string, unknown> = { ...p, cniVersion: opts.cniVersion ?? list.cniVersion, name: list.name };
  const rc: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(p.capabilities ?? {})) {
    if (on && at.capabilityArgs && cap in at.capabilityArgs) rc[cap] = at.capabilityArgs[cap];
  }
  if (Object.keys(rc).length) conf.runtimeConfig = rc;
  if (prevResult !== undefined) conf.prevResult = prevResult;
  return conf;
}

function callFor(command: CniCommand, at: Attachment, opts: ChainOptions): PluginCall {
  return {
    command,
    containerId: at.containerId,
    ...(at.netns !== undefined ? { netns: at.netns } : {}),
    ifname: at.ifname,
    ...(at.args ? { args: at.args } : {}),
    path: opts.path,
    ...(opts.runIn ? { runIn: opts.runIn } : {}),
  };
}

export interface ChainStep {
  type: string;
  out: PluginOutput;
}

export interface ChainAdd {
  ok: boolean;
  /** The last plugin's result: what the runtime caches and hands to CHECK and DEL. */
  result?: unknown;
  steps: ChainStep[];
}

/** ADD through the whole list; stops at the first failure (the runtime then runs DEL). */
export async function addChain(list: ConflistJson, at: Attachment, opts: ChainOptions): Promise<ChainAdd> {
  let prev: unknown;
  const steps: ChainStep[] = [];
  for (let i = 0; i < list.plugins.length; i++) {
    const exe = findPlugin(list.plugins[i].type, opts.path);
    const out = await invokePlugin(exe, callFor("ADD", at, opts), pluginConfig(list, i, at, opts, prev));
    steps.push({ type: list.plugins[i].type, out });
    if (out.code !== 0) return { ok: false, steps };
    prev = out.json;
  }
  return { ok: true, result: prev, steps };
}

/** CHECK through the whole list with the cached result; every plugin must succeed. */
export async function checkChain(
  list: ConflistJson,
  at: Attachment,
  cached: unknown,
  opts: ChainOptions,
): Promise<{ ok: boolean; steps: ChainStep[] }> {
  const steps: ChainStep[] = [];
  for (let i = 0; i < list.plugins.length; i++) {
    const exe = findPlugin(list.plugins[i].type, opts.path);
    const out = await invokePlugin(exe, callFor("CHECK", at, opts), pluginConfig(list, i, at, opts, cached));
    steps.push({ type: list.plugins[i].type, out });
    if (out.code !== 0) return { ok: false, steps };
  }
  return { ok: true, steps };
}

/** DEL in reverse order; like libcni it stops at the first plugin that fails. */
export async function delChain(
  list: ConflistJson,
  at: Attachment,
  cached: unknown,
  opts: ChainOptions,
): Promise<{ ok: boolean; steps: ChainStep[] }> {
  const steps: ChainStep[] = [];
  for (let i = list.plugins.length - 1; i >= 0; i--) {
    const exe = findPlugin(list.plugins[i].type, opts.path);
    const out = await invokePlugin(exe, callFor("DEL", at, opts), pluginConfig(list, i, at, opts, cached));
    steps.push({ type: list.plugins[i].type, out });
    if (out.code !== 0) return { ok: false, steps };
  }
  return { ok: true, steps };
}

/** A single-plugin list, for tests that talk to one plugin. */
export function singlePluginList(
  name: string,
  cniVersion: string,
  plugin: { type: string; [k: string]: unknown },
): ConflistJson {
  return { cniVersion, name, plugins: [plugin] };
}

/** Pulls the addresses (without prefix) out of a 0.3.0-1.1.0 result. */
export function resultAddresses(result: unknown): string[] {
  const ips = (result as { ips?: Array<{ address?: string }> } | undefined)?.ips ?? [];
  return ips.map((i) => String(i.address ?? "").split("/")[0]).filter(Boolean);
}
