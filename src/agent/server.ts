// The unix socket the CNI plugin talks to, per connection either one JSON line in and one out
// (src/agent/protocol.ts), or one forwarded plugin call (src/agent/frame.ts) from the native
// forwarder, which the agent runs in process.
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { AgentCode } from "./codes.js";
import { encodeAnswer, isFrame, parseFrame, type ForwardedCall } from "./frame.js";
import { pluginHost, type PluginHost } from "./plugin-host.js";
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
  const dispatch = dispatcher(o);
  const host = pluginHost({ socket: o.path, dispatch: (req) => dispatch(req) });
  const server = createServer({ allowHalfOpen: true }, (sock) => serve(sock, o, dispatch, host));
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

/** Validates a decoded request and serves it; both protocols (JSON line, frame) end here. */
function dispatcher(o: SocketServerOptions): (value: unknown) => Promise<AgentResponse> {
  return async (value) => {
    const parsed = parseRequest(value);
    if (!parsed.ok) return { ok: false, code: AgentCode.InvalidEnvironment, msg: parsed.msg };
    const t0 = performance.now();
    const res = await o.handle(parsed.req);
    o.log.debug({ op: parsed.req.op, ok: res.ok, ms: +(performance.now() - t0).toFixed(1) }, "request");
    // STATUS answering "not ready" is a poll's expected answer, not a failure worth a warning.
    if (!res.ok) o.log[parsed.req.op === "status" ? "debug" : "warn"]({ op: parsed.req.op, code: res.code, msg: res.msg }, "request failed");
    return res;
  };
}

function serve(sock: Socket, o: SocketServerOptions, dispatch: (value: unknown) => Promise<AgentResponse>, host: PluginHost): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  const reply = (r: AgentResponse) => {
    done = true;
    if (!sock.destroyed) sock.end(JSON.stringify(r) + "\n");
  };
  const onLine = async (line: string) => {
    let value: unknown;
    try { value = JSON.parse(line); } catch {
      return reply({ ok: false, code: AgentCode.DecodeFailure, msg: "request is not valid JSON" });
    }
    reply(await dispatch(value));
  };
  const onCall = async (call: ForwardedCall) => {
    const out = await host(call);
    if (!sock.destroyed) sock.end(encodeAnswer(out.exitCode, out.stdout ? out.stdout + "\n" : ""));
  };
  const tooLarge = () => reply({ ok: false, code: AgentCode.DecodeFailure, msg: "request too large" });
  sock.on("data", (chunk: Buffer) => {
    if (done) return;
    chunks.push(chunk);
    size += chunk.length;
    const buf = chunks.length === 1 ? chunk : Buffer.concat(chunks);
    const frame = isFrame(buf);
    if (frame === undefined) return;
    if (frame) {
      const f = parseFrame(buf, MAX_REQUEST_BYTES);
      if (f.state === "incomplete") return;
      done = true;
      if (f.state === "invalid") return reply({ ok: false, code: AgentCode.DecodeFailure, msg: `invalid plugin frame: ${f.msg}` });
      void onCall(f.call).catch((e: unknown) => {
        o.log.error({ err: String(e) }, "forwarded plugin call failed");
        sock.destroy();
      });
      return;
    }
    const nl = buf.indexOf(10);
    if (nl >= 0) { done = true; void onLine(buf.subarray(0, nl).toString("utf8")); }
    else if (size > MAX_REQUEST_BYTES) tooLarge();
  });
  // A client that half-closes without a newline still gets an answer.
  sock.on("end", () => {
    if (done) return;
    const buf = Buffer.concat(chunks);
    if (isFrame(buf) !== false && buf.length > 0) return reply({ ok: false, code: AgentCode.DecodeFailure, msg: "invalid plugin frame: truncated" });
    const text = buf.toString("utf8");
    if (text.trim()) { done = true; void onLine(text); }
    // An empty request still gets an answer (and its connection closed), not a socket held open.
    else reply({ ok: false, code: AgentCode.DecodeFailure, msg: "empty request" });
  });
  sock.on("error", () => undefined);
}
