// What the fault tests (src/e2e/faults-kill.test.ts, src/e2e/fuzz.test.ts) check from the
// outside: raw bytes to the agent's socket, the plugin exec'd as a runtime does (env + stdin, any
// bytes), the IPAM store's rows, the nft elements in a node namespace. Nothing here imports agent
// code: the tests see weft as a runtime, an admin or an attacker would.
import Database from "better-sqlite3";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { run, runStatus } from "../kernel/exec.js";

export interface RawAnswer {
  /** Everything the agent sent before it closed the connection. */
  bytes: Buffer;
  /** The agent closed the connection (false: our timeout ended the wait). */
  closed: boolean;
}

/** Writes BYTES to the socket, half-closes, and collects the answer until the agent closes. */
export function rawExchange(socketPath: string, bytes: Buffer, timeoutMs: number): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ bytes: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on("connect", () => {
      sock.end(bytes);
    });
    sock.on("data", (d: Buffer) => chunks.push(d));
    sock.on("close", () => finish(true));
    sock.on("error", (e: NodeJS.ErrnoException) => {
      // The agent may close while we still write (it answered early): what it sent is the answer.
      if (e.code === "EPIPE" || e.code === "ECONNRESET") return;
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(e);
      }
    });
  });
}

/** The agent's answer: a JSON line (its own protocol) or a WEFTCNI1 frame answer (exit code + stdout). */
export type DecodedAnswer =
  | { kind: "json"; value: unknown }
  | { kind: "frame"; exitCode: number; stdout: string }
  | { kind: "garbage"; why: string };

export function decodeAnswer(b: Buffer): DecodedAnswer {
  if (b.length >= 16 && b.subarray(0, 8).toString("latin1") === "WEFTCNI1") {
    const exitCode = b.readInt32BE(8);
    const n = b.readUInt32BE(12);
    if (b.length !== 16 + n)
      return { kind: "garbage", why: `frame answer of ${b.length} bytes announces ${n} bytes of stdout` };
    return { kind: "frame", exitCode, stdout: b.subarray(16).toString("utf8") };
  }
  const text = b.toString("utf8");
  const nl = text.indexOf("\n");
  if (nl !== text.length - 1)
    return { kind: "garbage", why: `not one JSON line: ${JSON.stringify(text.slice(0, 200))}` };
  try {
    return { kind: "json", value: JSON.parse(text) };
  } catch {
    return { kind: "garbage", why: `not JSON: ${JSON.stringify(text.slice(0, 200))}` };
  }
}

/** Decodes a WEFTCNI1 request the test built (null when it is not a well-formed one). */
export function decodeFrameRequest(b: Buffer): { env: Record<string, string>; stdin: Buffer } | null {
  const head = 9;
  if (b.length < head + 8 || b.subarray(0, head).toString("latin1") !== "WEFTCNI1\n") return null;
  const envLen = b.readUInt32BE(head);
  if (b.length < head + 4 + envLen + 4) return null;
  const stdinLen = b.readUInt32BE(head + 4 + envLen);
  if (b.length !== head + 8 + envLen + stdinLen) return null;
  const env: Record<string, string> = {};
  for (const e of b
    .subarray(head + 4, head + 4 + envLen)
    .toString("utf8")
    .split("\0")) {
    const eq = e.indexOf("=");
    if (eq > 0) env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  return { env, stdin: b.subarray(head + 8 + envLen) };
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Execs the plugin as a runtime does: exactly ENV (env -i), STDIN as given (any bytes), inside the
 * node namespace RUNIN, under a timeout.
 */
export function execPlugin(
  exe: string,
  env: Record<string, string>,
  stdin: Buffer,
  runIn: string,
  timeoutSec = 60,
): Promise<ExecResult> {
  // A plugin that stops reading (over its cap) is fine: runStatus ignores the EPIPE.
  const argv = ["env", "-i", ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
  return runStatus([...argv, "timeout", "-k", "5", String(timeoutSec), exe], { netns: runIn, input: stdin });
}

/** Whether TEXT is a CNI error as the spec prints it: {cniVersion, code, msg[, details]}. */
export function specError(text: string): { cniVersion: string; code: number; msg: string } | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  const o = v as { cniVersion?: unknown; code?: unknown; msg?: unknown; details?: unknown } | null;
  if (!o || typeof o !== "object") return null;
  if (typeof o.cniVersion !== "string" || !/^\d+\.\d+\.\d+$/.test(o.cniVersion)) return null;
  if (typeof o.code !== "number" || !Number.isInteger(o.code) || o.code <= 0) return null;
  if (typeof o.msg !== "string" || o.msg.length === 0) return null;
  if (o.details !== undefined && typeof o.details !== "string") return null;
  return { cniVersion: o.cniVersion, code: o.code, msg: o.msg };
}

/** Rows of the agent's IPAM store (STATE_DIR/ipam.db), read-only, as an admin would count them. */
export function ipamStoreRows(stateDir: string): {
  attachments: Array<{ network: string; containerId: string; ifname: string; state: string }>;
  addresses: number;
} {
  const file = join(stateDir, "ipam.db");
  if (!existsSync(file)) return { attachments: [], addresses: 0 };
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    db.pragma("busy_timeout = 5000");
    const attachments = db
      .prepare("SELECT network, container_id AS containerId, ifname, state FROM attachments")
      .all() as Array<{ network: string; containerId: string; ifname: string; state: string }>;
    const addresses = (db.prepare("SELECT count(*) AS n FROM addresses").get() as { n: number }).n;
    return { attachments, addresses };
  } finally {
    db.close();
  }
}

/** Every element of every set and map in NETNS's nft ruleset, as JSON text (one string per element). */
export async function nftElements(netns: string): Promise<string[]> {
  const out = await run(["nft", "-j", "list", "ruleset"], { netns });
  const doc = JSON.parse(out) as { nftables?: Array<Record<string, { name?: string; elem?: unknown[] }>> };
  const elems: string[] = [];
  for (const item of doc.nftables ?? []) {
    const s = item.set ?? item.map;
    for (const e of s?.elem ?? []) elems.push(`${s?.name}: ${JSON.stringify(e)}`);
  }
  return elems;
}

/** IPv4/IPv6 global addresses of every interface in NETNS (what `ip -j addr` shows). */
export async function globalAddresses(netns: string): Promise<string[]> {
  const links = JSON.parse(await run(["ip", "-j", "addr", "show"], { netns })) as Array<{
    addr_info?: Array<{ local: string; scope: string }>;
  }>;
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.scope === "global").map((a) => a.local));
}
