// The CNI plugin's logic: env + config checks, then each verb forwarded to the node agent.
// Kept free of process globals so tests can drive it; main.ts wires it to the real process.
import { statSync } from "node:fs";
import { callAgent } from "../agent-api/client.js";
import { AgentProtocolError, AgentTimeout, AgentUnreachable } from "../agent-api/errors.js";
import type { AgentRequestInput, AgentResponse } from "../agent-api/schema.js";
import { decodeNetConf, errorVersion, validateNetConf, type WeftNetConf } from "../cni/config.js";
import { parseCommand, parseEnv, type CniEnv, type EnvSource } from "../cni/env.js";
import { asCniError, CniError, ioFailure, notAvailable, tryAgainLater, unknownContainer } from "../cni/errors.js";
import { mergeResults, parseResult, toVersion } from "../cni/result.js";
import { CniErrorCode, type CniCommand, type Result } from "../cni/types.js";
import { LATEST_VERSION, versionResult } from "../cni/version.js";
import { queueDel, unqueue } from "./del-queue.js";
import { delegateSupports, runDelegate, type Delegate } from "./delegate.js";

export interface PluginIo {
  env: EnvSource;
  /** Reads stdin (capped); not called for VERSION when `stdinIsTty`. */
  readStdin: () => Promise<Buffer>;
  stdinIsTty?: boolean;
  /** How requests reach the agent; the agent itself passes one that skips its own socket. */
  transport?: AgentTransport;
}

export type AgentTransport = (socketPath: string, req: AgentRequestInput, timeoutMs: number) => Promise<AgentResponse>;

export interface PluginOutcome {
  /** JSON for stdout, or "" (DEL, CHECK, GC, STATUS succeed silently). */
  stdout: string;
  exitCode: number;
}

/** How long to wait for the agent by default; "timeoutMs" in the config overrides all of these. */
export const DEFAULT_TIMEOUT_MS: Record<Exclude<CniCommand, "VERSION">, number> = {
  ADD: 60_000,
  DEL: 60_000,
  CHECK: 30_000,
  GC: 60_000,
  STATUS: 5_000,
};

export async function runPlugin(io: PluginIo): Promise<PluginOutcome> {
  let raw: Record<string, unknown> | undefined;
  try {
    const command = parseCommand(io.env);
    if (command === "VERSION") return ok(versionResult(await requestedVersion(io)));
    // Read and decode first so that even an env error carries the config's cniVersion.
    const input = await io.readStdin();
    let decodeError: unknown;
    try {
      raw = decodeNetConf(input.toString("utf8"));
    } catch (e) {
      decodeError = e;
    }
    const env = parseEnv(io.env);
    if (decodeError || !raw) throw decodeError;
    const conf = validateNetConf(raw, command);
    const ctx: Ctx = {
      env,
      conf,
      input,
      processEnv: io.env,
      timeoutMs: conf.timeoutMs ?? DEFAULT_TIMEOUT_MS[command],
      transport: io.transport ?? callAgent,
    };
    switch (command) {
      case "ADD":
        return ok(await cmdAdd(ctx));
      case "DEL":
        await cmdDel(ctx);
        break;
      case "CHECK":
        await cmdCheck(ctx);
        break;
      case "GC":
        await cmdGc(ctx);
        break;
      case "STATUS":
        await cmdStatus(ctx);
        break;
    }
    return { stdout: "", exitCode: 0 };
  } catch (e) {
    return { stdout: JSON.stringify(asCniError(e).toJson(errorVersion(raw))), exitCode: 1 };
  }
}

const ok = (v: unknown): PluginOutcome => ({ stdout: JSON.stringify(v), exitCode: 0 });

/** How long VERSION waits for its optional stdin: a caller may leave stdin open and send nothing. */
const VERSION_STDIN_WAIT_MS = 1000;

/** VERSION's stdin is optional ({"cniVersion": ...}); anything unreadable just means "latest". */
async function requestedVersion(io: PluginIo): Promise<unknown> {
  if (io.stdinIsTty) return LATEST_VERSION;
  let timer: NodeJS.Timeout | undefined;
  const wait = new Promise<Buffer>((resolve) => {
    timer = setTimeout(() => resolve(Buffer.alloc(0)), VERSION_STDIN_WAIT_MS);
    timer.unref();
  });
  try {
    const input = await Promise.race([io.readStdin(), wait]);
    const v = JSON.parse(input.toString("utf8")) as { cniVersion?: unknown };
    return v?.cniVersion;
  } catch {
    return LATEST_VERSION;
  } finally {
    clearTimeout(timer);
  }
}

interface Ctx {
  env: CniEnv;
  conf: WeftNetConf;
  input: Buffer;
  processEnv: EnvSource;
  timeoutMs: number;
  transport: AgentTransport;
}

function delegateOf(ctx: Ctx): Delegate | undefined {
  const ipam = ctx.conf.ipam;
  if (!ipam) return undefined;
  return {
    type: ipam.type,
    path: ctx.env.path,
    env: ctx.processEnv,
    config: ctx.input,
    cniVersion: ctx.conf.cniVersion,
    timeoutMs: ctx.timeoutMs,
  };
}

/** ADD and CHECK need the pod's netns: a missing one means the container is gone (code 3). */
function requireNetns(netns: string): void {
  try {
    statSync(netns);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR")
      throw unknownContainer(
        `network namespace ${netns} does not exist`,
        "CNI_NETNS must name the container's network namespace",
      );
    throw ioFailure(`cannot access network namespace ${netns}`, code ?? String(e));
  }
}

/** DEL: a netns that is already gone is forwarded as "no netns". */
function netnsIfPresent(netns: string | undefined): string | undefined {
  if (!netns) return undefined;
  try {
    statSync(netns);
    return netns;
  } catch {
    return undefined;
  }
}

/** Sends one request; transport failures become 11 (try again) or, for STATUS, 50 (not available). */
async function agent(ctx: Ctx, req: AgentRequestInput): Promise<AgentResponse & { ok: true }> {
  let resp: AgentResponse;
  try {
    resp = await ctx.transport(ctx.conf.socket, req, ctx.timeoutMs);
  } catch (e) {
    transportFailure(req, e);
  }
  return answered(resp);
}

// Runtimes show only msg and details (containerd: 'plugin type="weft" failed (add): MSG; DETAILS'), not the
// code: say it, so an admin reading pod events or the kubelet log sees that a retry is expected.
const TRY_AGAIN = "try again later (CNI error 11)";

function transportFailure(req: AgentRequestInput, e: unknown): never {
  const status = req.op === "status";
  if (e instanceof AgentUnreachable) {
    const hint = 'is the weft agent running? (bin/weft agent ... --socket PATH; the conflist\'s "socket" must match)';
    throw status
      ? notAvailable(`weft agent is not available: ${e.message}`, hint)
      : tryAgainLater(e.message, `${TRY_AGAIN}: ${hint}`);
  }
  if (e instanceof AgentTimeout)
    throw status
      ? notAvailable(e.message)
      : tryAgainLater(e.message, `${TRY_AGAIN}: the agent may be overloaded; the runtime should retry`);
  if (e instanceof AgentProtocolError) throw ioFailure(e.message);
  throw e;
}

function answered(resp: AgentResponse): AgentResponse & { ok: true } {
  if (!resp.ok) throw new CniError(resp.code, resp.msg, resp.details);
  return resp;
}

/** Nothing listens on the socket: no agent runs (as opposed to one that is busy or refuses us). */
function agentDown(e: unknown): boolean {
  return e instanceof AgentUnreachable && (e.reason === "ENOENT" || e.reason === "ECONNREFUSED");
}

async function cmdAdd(ctx: Ctx): Promise<Record<string, unknown>> {
  const { env, conf } = ctx;
  requireNetns(env.netns!);
  const del = delegateOf(ctx);
  let ipamResult: Result | undefined;
  if (del) {
    try {
      ipamResult = await runDelegate(del, "ADD");
    } catch (e) {
      // Spec section 4: a failed delegated ADD is followed by the delegate's DEL.
      await rollbackIpam(del);
      throw e;
    }
  }
  let result: Result;
  try {
    const resp = await agent(ctx, {
      op: "add",
      network: conf.name,
      containerId: env.containerId!,
      netns: env.netns!,
      ifname: env.ifname!,
      args: env.args,
      ...(conf.mtu !== undefined ? { mtu: conf.mtu } : {}),
      ...(ipamResult
        ? { ipam: { ips: ipamResult.ips ?? [], ...(ipamResult.routes ? { routes: ipamResult.routes } : {}) } }
        : {}),
    });
    if (!resp.result) throw ioFailure(`the weft agent on ${conf.socket} answered ADD without a result`);
    result = parseResult(resp.result, LATEST_VERSION, {
      what: "the weft agent's ADD result",
      code: CniErrorCode.IoFailure,
    });
  } catch (e) {
    // Spec: a delegated plugin's ADD is undone with DEL when the ADD fails as a whole.
    if (del) await rollbackIpam(del);
    throw e;
  }
  if (!result.dns) {
    const dns = ipamResult?.dns ?? conf.dns;
    if (dns) result.dns = dns;
  }
  if (conf.prevResult) result = mergeResults(conf.prevResult, result);
  return toVersion(result, conf.cniVersion);
}

/** Best effort: the original error is what the runtime needs to see. */
async function rollbackIpam(del: Delegate): Promise<void> {
  await runDelegate(del, "DEL").catch((e: unknown) =>
    process.stderr.write(`weft: rolling back IPAM plugin ${del.type}: ${asCniError(e).message}\n`),
  );
}

async function cmdDel(ctx: Ctx): Promise<void> {
  const { env, conf } = ctx;
  const netns = netnsIfPresent(env.netns);
  const del = delegateOf(ctx);
  const req: AgentRequestInput = {
    op: "del",
    network: conf.name,
    containerId: env.containerId!,
    ...(netns ? { netns } : {}),
    ifname: env.ifname!,
    ...(del ? { delegatedIpam: true } : {}),
  };
  let resp: AgentResponse;
  try {
    resp = await ctx.transport(conf.socket, req, ctx.timeoutMs);
  } catch (e) {
    if (!agentDown(e)) transportFailure(req, e);
    // No agent: queue the call for the agent to replay when it starts, and succeed, so the runtime
    // can finish deleting the pod (the delegate's DEL is replayed too, after the agent's).
    const key = { network: conf.name, containerId: env.containerId!, ifname: env.ifname! };
    let file: string;
    try {
      file = await queueDel(conf.socket, key, ctx.processEnv, ctx.input);
    } catch (qe) {
      throw tryAgainLater(
        `the weft agent is not running and the DEL could not be queued: ${(qe as Error).message}`,
        "start the weft agent; the runtime should retry",
      );
    }
    // The agent may have opened its socket after its start-up replay read the queue: ask once
    // more, so a DEL queued in that moment is not left for the next restart.
    try {
      resp = await ctx.transport(conf.socket, req, ctx.timeoutMs);
    } catch {
      process.stderr.write(`weft: the agent is not running; DEL queued in ${file} for it to replay when it starts\n`);
      return;
    }
    await unqueue(file);
  }
  answered(resp);
  // Addresses are released only after the agent removed the interface holding them.
  if (del) await runDelegate(del, "DEL");
}

async function cmdCheck(ctx: Ctx): Promise<void> {
  const { env, conf } = ctx;
  requireNetns(env.netns!);
  const del = delegateOf(ctx);
  if (del) await runDelegate(del, "CHECK");
  await agent(ctx, {
    op: "check",
    network: conf.name,
    containerId: env.containerId!,
    netns: env.netns!,
    ifname: env.ifname!,
    prevResult: conf.prevResult!,
    ...(del ? { delegatedIpam: true } : {}),
  });
}

/** GC keeps going after a failure (spec) and reports every failure at the end. */
async function cmdGc(ctx: Ctx): Promise<void> {
  const errors: CniError[] = [];
  await agent(ctx, { op: "gc", network: ctx.conf.name, validAttachments: ctx.conf.validAttachments ?? [] }).catch(
    (e: unknown) => errors.push(asCniError(e)),
  );
  const del = delegateOf(ctx);
  if (del) {
    try {
      if (await delegateSupports(del, ctx.conf.cniVersion)) await runDelegate(del, "GC");
    } catch (e) {
      errors.push(asCniError(e));
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new CniError(errors[0].code, errors[0].msg, errors.map((e) => e.message).join("; "));
}

async function cmdStatus(ctx: Ctx): Promise<void> {
  await agent(ctx, { op: "status", network: ctx.conf.name });
  const del = delegateOf(ctx);
  // A delegate that predates STATUS cannot report; weft's own answer stands then.
  if (del && (await delegateSupports(del, ctx.conf.cniVersion))) await runDelegate(del, "STATUS");
}
