// The unix socket the CNI plugin talks to: one JSON line in, one JSON line out, per connection.
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { AgentCode } from "./codes.js";
import type { AgentRequest, AgentResponse } from "./protocol.js";
import { parseRequest } from "./schema.js";

const MAX_REQUEST_BYTES = 4 * 1024 * 1024;

export interface SocketServerOptions {
  path: string;
  log: Logger;
  handle: (req: AgentRequest) => Promise<AgentResponse>;
}

export async function listen(o: SocketServerOptions): Promise<Server> {
  const dir = dirname(o.path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  // A socket file left by an agent that died; anything else at that path is not ours to remove.
  await removeStaleSocket(o.path);
  // allowHalfOpen: a client may shut down its side after the request and still read the answer.
  const server = createServer({ allowHalfOpen: true }, (sock) => serve(sock, o));
  // umask makes the socket 0600 from the moment it exists; chmod makes sure.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.path, () => { server.off("error", reject); resolve(); });
    });
  } finally {
    process.umask(old);
  }
  chmodSync(o.path, 0o600);
  return server;
}

/**
 * Removes a socket file left by an agent that died. Refuses when a live agent answers on it, or
 * when the path is not a socket. The agent calls this before it touches anything else.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
  if (await answers(path)) throw new Error(`another agent is already listening on ${path}`);
  unlinkSync(path);
}

/** Whether something accepts connections on the socket (a live agent, not a stale file). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once("connect", () => { c.destroy(); resolve(true); });
    c.once("error", () => resolve(false));
  });
}

function serve(sock: Socket, o: SocketServerOptions): void {
  let buf = "";
  let done = false;
  sock.setEncoding("utf8");
  const reply = (r: AgentResponse) => {
    done = true;
    sock.end(JSON.stringify(r) + "\n");
  };
  const onLine = async (line: string) => {
    let value: unknown;
    try { value = JSON.parse(line); } catch {
      return reply({ ok: false, code: AgentCode.DecodeFailure, msg: "request is not valid JSON" });
    }
    const parsed = parseRequest(value);
    if (!parsed.ok) return reply({ ok: false, code: AgentCode.InvalidEnvironment, msg: parsed.msg });
    const t0 = performance.now();
    const res = await o.handle(parsed.req);
    o.log.debug({ op: parsed.req.op, ok: res.ok, ms: +(performance.now() - t0).toFixed(1) }, "request");
    // STATUS answering "not ready" is a poll's expected answer, not a failure worth a warning.
    if (!res.ok) o.log[parsed.req.op === "status" ? "debug" : "warn"]({ op: parsed.req.op, code: res.code, msg: res.msg }, "request failed");
    if (!sock.destroyed) reply(res);
  };
  sock.on("data", (chunk: string) => {
    if (done) return;
    buf += chunk;
    const nl = buf.indexOf("\n");
    if (nl >= 0) { done = true; void onLine(buf.slice(0, nl)); }
    else if (buf.length > MAX_REQUEST_BYTES) reply({ ok: false, code: AgentCode.DecodeFailure, msg: "request too large" });
  });
  // A client that half-closes without a newline still gets an answer.
  sock.on("end", () => { if (!done && buf.trim()) { done = true; void onLine(buf); } });
  sock.on("error", () => undefined);
}
