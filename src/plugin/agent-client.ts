// The plugin's side of the agent protocol (src/agent/protocol.ts): one connection per request,
// one JSON line each way. Failures are typed so the caller can pick the right CNI code.
import { createConnection } from "node:net";
// eslint-disable-next-line import/no-restricted-paths -- temporary: the agent protocol moves to its own module (src/agent-api/, branch agent-protocol); remove at merge
import type { AgentRequest, AgentResponse } from "../agent/protocol.js";

/** Nothing listens on the socket (agent not running, wrong path, no permission). */
export class AgentUnreachable extends Error {
  constructor(readonly socketPath: string, readonly reason: string) {
    super(`cannot connect to the weft agent on ${socketPath} (${reason})`);
    this.name = "AgentUnreachable";
  }
}

/** The agent accepted the request but did not answer in time. */
export class AgentTimeout extends Error {
  constructor(readonly socketPath: string, readonly timeoutMs: number, readonly connected: boolean) {
    super(connected
      ? `the weft agent on ${socketPath} did not answer within ${timeoutMs} ms`
      : `connecting to the weft agent on ${socketPath} took longer than ${timeoutMs} ms`);
    this.name = "AgentTimeout";
  }
}

/** The agent answered something that is not a protocol response. */
export class AgentProtocolError extends Error {
  constructor(readonly socketPath: string, detail: string) {
    super(`the weft agent on ${socketPath} sent an invalid answer: ${detail}`);
    this.name = "AgentProtocolError";
  }
}

/** Large enough for any result; a runaway peer cannot make the plugin buffer without bound. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

export function callAgent(socketPath: string, req: AgentRequest, timeoutMs: number): Promise<AgentResponse> {
  return new Promise<AgentResponse>((resolve, reject) => {
    const sock = createConnection({ path: socketPath });
    let connected = false;
    let settled = false;
    let buf = "";
    const finish = (err: Error | null, value?: AgentResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const settle = (line: string) => {
      try {
        finish(null, decode(socketPath, line));
      } catch (e) {
        finish(e as Error);
      }
    };
    const timer = setTimeout(() => finish(new AgentTimeout(socketPath, timeoutMs, connected)), timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => {
      connected = true;
      sock.write(JSON.stringify(req) + "\n");
    });
    sock.on("data", (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl >= 0) settle(buf.slice(0, nl));
      else if (buf.length > MAX_RESPONSE_BYTES) finish(new AgentProtocolError(socketPath, `no end of line after ${MAX_RESPONSE_BYTES} bytes`));
    });
    sock.on("end", () => {
      if (buf.trim()) settle(buf);
      else finish(new AgentProtocolError(socketPath, "it closed the connection without answering"));
    });
    sock.on("error", (e: NodeJS.ErrnoException) => {
      const reason = e.code ?? e.message;
      finish(connected ? new AgentProtocolError(socketPath, `connection failed: ${reason}`) : new AgentUnreachable(socketPath, reason));
    });
  });
}

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
