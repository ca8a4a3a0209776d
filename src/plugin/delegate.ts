// Delegated plugins (spec section 4): an IPAM plugin such as host-local, found in CNI_PATH and
// run with the same environment and the same configuration the runtime gave weft.
import { spawn } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { join } from "node:path";
import { CniError, InternalErrorCode, invalidConfig, invalidEnv, ioFailure } from "../cni/errors.js";
import { parseResult } from "../cni/result.js";
import { CniErrorCode, type CniCommand, type CniVersion, type Result } from "../cni/types.js";

export interface Delegate {
  type: string;
  /** CNI_PATH directories. */
  path: readonly string[];
  /** The environment weft was started with (passed on unchanged, except CNI_COMMAND). */
  env: Readonly<Record<string, string | undefined>>;
  /** The exact configuration bytes weft read on stdin. */
  config: Buffer;
  cniVersion: CniVersion;
  timeoutMs: number;
  /** Bytes allowed on each of stdout and stderr (DELEGATE_OUTPUT_CAP unless given). */
  outputCap?: number;
}

/** The first executable named `type` in the CNI_PATH directories. */
export function findPlugin(type: string, dirs: readonly string[]): string {
  if (dirs.length === 0) throw invalidEnv(`CNI_PATH is not set: it is needed to find the IPAM plugin "${type}"`);
  for (const dir of dirs) {
    const p = join(dir, type);
    try {
      if (statSync(p).isFile()) {
        accessSync(p, constants.X_OK);
        return p;
      }
    } catch {
      // not here: try the next directory
    }
  }
  throw invalidConfig(`IPAM plugin "${type}" not found in CNI_PATH`, `searched ${dirs.join(":")}`);
}

interface Exec {
  code: number | null;
  stdout: string;
}

/**
 * The most a delegate may write to each of stdout and stderr. A result is a few hundred bytes;
 * past this the plugin is broken or hostile, and reading on would grow without bound.
 */
export const DELEGATE_OUTPUT_CAP = 1024 * 1024;

function exec(file: string, command: CniCommand, input: Buffer, d: Delegate): Promise<Exec> {
  const cap = d.outputCap ?? DELEGATE_OUTPUT_CAP;
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(d.env)) if (v !== undefined) env[k] = v;
    env.CNI_COMMAND = command;
    // stderr is passed on to ours, as the spec asks, up to the cap.
    const child = spawn(file, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let stopped: CniError | undefined;
    const stop = (why: CniError) => {
      if (stopped) return;
      stopped = why;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(
      () =>
        stop(
          new CniError(
            CniErrorCode.TryAgainLater,
            `IPAM plugin ${d.type} ${command} did not finish within ${d.timeoutMs} ms`,
          ),
        ),
      d.timeoutMs,
    );
    const tooMuch = (stream: string) =>
      new CniError(
        InternalErrorCode,
        `IPAM plugin ${d.type} ${command} wrote more than ${cap} bytes to ${stream}; it was stopped`,
      );
    child.stdout.on("data", (c: Buffer) => {
      outBytes += c.length;
      if (outBytes > cap) return stop(tooMuch("stdout"));
      if (!stopped) stdout.push(c);
    });
    child.stderr.on("data", (c: Buffer) => {
      errBytes += c.length;
      if (errBytes > cap) return stop(tooMuch("stderr"));
      if (!stopped) process.stderr.write(c);
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(ioFailure(`cannot run IPAM plugin ${file}`, e.message));
    });
    // Once stopped, its exit is enough: a grandchild holding the pipes must not keep us waiting.
    child.on("exit", () => {
      if (!stopped) return;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      reject(stopped);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (stopped) reject(stopped);
      else resolve({ code, stdout: Buffer.concat(stdout).toString("utf8") });
    });
    // A plugin that exits without reading stdin must not crash us with EPIPE.
    child.stdin.on("error", () => {});
    child.stdin.end(input);
  });
}

/** A failed delegate's error JSON, re-raised with its code and the plugin named. */
function delegateError(d: Delegate, command: CniCommand, r: Exec): CniError {
  try {
    const e = JSON.parse(r.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e.code === "number" && typeof e.msg === "string") {
      return new CniError(
        e.code,
        `IPAM plugin ${d.type} ${command} failed: ${e.msg}`,
        typeof e.details === "string" ? e.details : undefined,
      );
    }
  } catch {
    // not an error structure: report what it printed
  }
  return new CniError(
    InternalErrorCode,
    `IPAM plugin ${d.type} ${command} failed (exit ${r.code})`,
    r.stdout.trim().slice(0, 2000) || undefined,
  );
}

/** Runs the delegate for a verb; for ADD returns its (abbreviated) result in internal form. */
export async function runDelegate(
  d: Delegate,
  command: "ADD" | "DEL" | "CHECK" | "GC" | "STATUS",
): Promise<Result | undefined> {
  const file = findPlugin(d.type, d.path);
  const r = await exec(file, command, d.config, d);
  if (r.code !== 0) throw delegateError(d, command, r);
  if (command !== "ADD") return undefined;
  let json: unknown;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    throw new CniError(
      CniErrorCode.DecodeFailure,
      `IPAM plugin ${d.type} printed a result that is not JSON`,
      r.stdout.slice(0, 2000),
    );
  }
  return parseResult(json, d.cniVersion, {
    what: `IPAM plugin ${d.type} result`,
    code: CniErrorCode.DecodeFailure,
    ipam: true,
  });
}

/** Whether the delegate speaks `version` (GC and STATUS need 1.1.0; host-local 1.1.1 stops at 1.0.0). */
export async function delegateSupports(d: Delegate, version: string): Promise<boolean> {
  const file = findPlugin(d.type, d.path);
  const r = await exec(file, "VERSION", Buffer.from(JSON.stringify({ cniVersion: version })), d);
  if (r.code !== 0) return false;
  try {
    const v = JSON.parse(r.stdout) as { supportedVersions?: unknown };
    return Array.isArray(v.supportedVersions) && v.supportedVersions.includes(version);
  } catch {
    return false;
  }
}
