// The one client of the agent's socket (the plugin, the CLI, the lab and the tests all use it):
// one connection per request, one JSON line each way, bounded in time and in answer size.
// Failures are typed (errors.ts) so each caller can pick its answer.
import { createConnection } from "node:net";
import { AgentProtocolError, AgentTimeout, AgentUnreachable } from "./errors.js";
import { MAX_RESPONSE_BYTES } from "./limits.js";
import type { AgentRequestInput, AgentResponse } from "./schema.js";

/** Long enough for an ADD the agent itself gives 60 s; callers with a tighter bound pass theirs. */
export const DEFAULT_CALL_TIMEOUT_MS = 120_000;

export function callAgent(
  socketPath: string,
  req: AgentRequestInput,
  timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
): Promise<AgentResponse> {
  return exchange(socketPath, req, timeoutMs);
}

/** Sends any JSON value as the request: for tests of the agent's validation, which must see bad requests. */
export function callAgentUnchecked(
  socketPath: string,
  value: unknown,
  timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
): Promise<AgentResponse> {
  return exchange(socketPath, value, timeoutMs);
}

function exchange(socketPath: string, value: unknown, timeoutMs: number): Promise<AgentResponse> {
  return new Promise<AgentResponse>((resolve, reject) => {
    const sock = createConnection({ path: socketPath });
    let connected = false;
    let settled = false;
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err: Error | null, res?: AgentResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(res!);
    };
    const settle = (bytes: Buffer) => {
      try {
        finish(null, decode(socketPath, bytes.toString("utf8")));
      } catch (e) {
        finish(e as Error);
      }
    };
    const timer = setTimeout(() => finish(new AgentTimeout(socketPath, timeoutMs, connected)), timeoutMs);
    sock.on("connect", () => {
      connected = true;
      sock.write(JSON.stringify(value) + "\n");
    });
    sock.on("data", (chunk: Buffer) => {
      const nl = chunk.indexOf(10);
      if (nl >= 0) {
        chunks.push(chunk.subarray(0, nl));
        return settle(Buffer.concat(chunks));
      }
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_RESPONSE_BYTES)
        finish(new AgentProtocolError(socketPath, `no end of line after ${MAX_RESPONSE_BYTES} bytes`));
    });
    sock.on("end", () => {
      const rest = Buffer.concat(chunks);
      if (rest.toString("utf8").trim()) settle(rest);
      else finish(new AgentProtocolError(socketPath, "it closed the connection without answering"));
    });
    sock.on("error", (e: NodeJS.ErrnoException) => {
      const reason = e.code ?? e.message;
      finish(
        connected
          ? new AgentProtocolError(socketPath, `connection failed: ${reason}`)
          : new AgentUnreachable(socketPath, reason),
      );
    });
  });
}

/** Checks the envelope; the plugin checks an ADD result's content itself (src/cni/result.ts). */
function decode(socketPath: string, line: string): AgentResponse {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new AgentProtocolError(socketPath, `not JSON: ${line.slice(0, 200)}`);
  }
  if (typeof v !== "object" || v === null) throw new AgentProtocolError(socketPath, "not a JSON object");
  const o = v as Record<string, unknown>;
  if (o.ok === true) return o as AgentResponse;
  if (o.ok === false && typeof o.code === "number" && typeof o.msg === "string") {
    return { ok: false, code: o.code, msg: o.msg, ...(typeof o.details === "string" ? { details: o.details } : {}) };
  }
  throw new AgentProtocolError(socketPath, `unexpected response ${line.slice(0, 200)}`);
}
