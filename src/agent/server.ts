// The unix socket the CNI plugin talks to, per connection either one JSON line in and one out
// (src/agent-api/schema.ts), or one forwarded plugin call (src/agent-api/frame.ts) from the native
// forwarder, which the agent runs in process.
// Bounded on every path: connections at once, request size (the same caps as the plugin's own
// stdin, src/agent-api/limits.ts) and the time a client may take to send its request. Over a
// limit a client gets a clear error answer (spec CNI error JSON when it is the plugin) and the
// connection closes; the agent carries on.
import { chmodSync, existsSync, lstatSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import type { Logger } from "pino";
import {
  DEFAULT_READ_LIMITS,
  encodeAnswer,
  RequestReader,
  type ReadLimits,
  type ReadState,
} from "../agent-api/frame.js";
import { MAX_CONNECTIONS, REQUEST_READ_TIMEOUT_MS } from "../agent-api/limits.js";
import { parseRequest, type AgentRequest, type AgentResponse } from "../agent-api/schema.js";
import { CniError } from "../cni/errors.js";
import { LATEST_VERSION } from "../cni/version.js";
import { AgentCode } from "./codes.js";
import { pluginHost, type PluginHost } from "./plugin-host.js";

export interface ServerLimits {
  /** Connections served at once; more are answered "try again later" (11) and closed. */
  maxConnections: number;
  /** From accept to the request's last byte, however the client trickles it. */
  requestTimeoutMs: number;
  read: ReadLimits;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxConnections: MAX_CONNECTIONS,
  requestTimeoutMs: REQUEST_READ_TIMEOUT_MS,
  read: DEFAULT_READ_LIMITS,
};

export interface SocketServerOptions {
  path: string;
  log: Logger;
  handle: (req: AgentRequest) => Promise<AgentResponse>;
  /** Tests lower these to reach them quickly. */
  limits?: Partial<ServerLimits>;
}

/** The socket's directory is missing its protection: anyone who can write there can swap the socket. */
export class UnsafeSocketDir extends Error {
  constructor(
    readonly dir: string,
    problem: string,
    fix: string,
  ) {
    super(`refusing the agent socket directory ${dir}: ${problem}; ${fix}`);
    this.name = "UnsafeSocketDir";
  }
}

export async function listen(o: SocketServerOptions): Promise<Server> {
  const limits = { ...DEFAULT_SERVER_LIMITS, ...o.limits };
  prepareSocketDir(dirname(o.path));
  // A socket file left by an agent that died; anything else at that path is not ours to remove.
  await removeStaleSocket(o.path);
  const dispatch = dispatcher(o);
  const host = pluginHost({ socket: o.path, dispatch });
  let open = 0;
  // allowHalfOpen: a client may shut down its side after the request and still read the answer.
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    sock.on("error", () => undefined);
    if (open >= limits.maxConnections) return refuseBusy(sock, o.log, limits.maxConnections);
    open++;
    sock.once("close", () => open--);
    serve(sock, o.log, limits, dispatch, host);
  });
  // umask makes the socket 0600 from the moment it exists; chmod makes sure.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.path, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
  chmodSync(o.path, 0o600);
  return server;
}

/** Makes the socket's directory (0700) if missing; refuses one that others could write or read. */
export function prepareSocketDir(dir: string): void {
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  checkSocketDir(dir);
}

/** An existing socket directory must be this user's and closed to group and others. */
export function checkSocketDir(dir: string): void {
  if (!existsSync(dir)) return;
  const st = statSync(dir);
  if (!st.isDirectory()) throw new UnsafeSocketDir(dir, "it is not a directory", "choose another --socket path");
  const uid = process.geteuid?.() ?? st.uid;
  if (st.uid !== uid) {
    throw new UnsafeSocketDir(
      dir,
      `it is owned by uid ${st.uid}, not by the agent's uid ${uid}`,
      `chown it to uid ${uid} or choose another --socket path`,
    );
  }
  const mode = st.mode & 0o777;
  if (mode & 0o077) {
    const problem = `its mode is 0${mode.toString(8)}, group and others must have no access`;
    throw new UnsafeSocketDir(dir, problem, `chmod 700 ${dir} or choose another --socket path`);
  }
}

/**
 * Removes a socket file left by an agent that died. Refuses when a live agent answers on it, when
 * the path is not a socket, or when its directory is open to others. The agent calls this before
 * it touches anything else.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  checkSocketDir(dirname(path));
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
  if (await answers(path)) throw new Error(`another agent is already listening on ${path}`);
  unlinkSync(path);
}

/** Whether something accepts connections on the socket (a live agent, not a stale file). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
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
    if (!res.ok)
      o.log[parsed.req.op === "status" ? "debug" : "warn"](
        { op: parsed.req.op, code: res.code, msg: res.msg },
        "request failed",
      );
    return res;
  };
}

/** How long a refused client gets to read its answer before the connection is cut. */
const LINGER_MS = 1000;

/** Sends the last answer and closes; a client that keeps sending or never reads is cut off. */
function closeWith(sock: Socket, answer: string | Buffer): void {
  if (sock.destroyed) return;
  sock.end(answer);
  setTimeout(() => sock.destroy(), LINGER_MS).unref();
}

/** Over the connection cap: the protocol is not known yet, so a JSON line (the forwarder then falls back to the full plugin, which reports it as 11). */
function refuseBusy(sock: Socket, log: Logger, max: number): void {
  // Read and drop what the client sends, so its close is seen and this connection ends with it.
  sock.resume();
  log.warn({ max }, "connection refused: the agent is serving its maximum of connections");
  const msg = `the weft agent is serving ${max} connections already; try again later`;
  closeWith(sock, JSON.stringify({ ok: false, code: AgentCode.TryAgainLater, msg }) + "\n");
}

function serve(
  sock: Socket,
  log: Logger,
  limits: ServerLimits,
  dispatch: (value: unknown) => Promise<AgentResponse>,
  host: PluginHost,
): void {
  const reader = new RequestReader(limits.read);
  let done = false;
  const deadline = setTimeout(() => {
    on({
      state: "invalid",
      frame: reader.isFrame,
      tooLarge: false,
      msg: `no complete request within ${limits.requestTimeoutMs} ms`,
    });
  }, limits.requestTimeoutMs);
  sock.once("close", () => clearTimeout(deadline));

  const on = (s: ReadState): void => {
    if (done || s.state === "incomplete") return;
    done = true;
    clearTimeout(deadline);
    switch (s.state) {
      case "empty":
        // An empty request still gets an answer (and its connection closed), not a silent close.
        return closeWith(
          sock,
          JSON.stringify({ ok: false, code: AgentCode.DecodeFailure, msg: "empty request" }) + "\n",
        );
      case "invalid":
        log.warn({ frame: s.frame, tooLarge: s.tooLarge, err: s.msg }, "request refused");
        // The forwarder prints a frame's answer as the plugin's: spec error JSON, exit code 1.
        if (s.frame)
          return closeWith(
            sock,
            encodeAnswer(1, JSON.stringify(new CniError(AgentCode.DecodeFailure, s.msg).toJson(LATEST_VERSION)) + "\n"),
          );
        return closeWith(sock, JSON.stringify({ ok: false, code: AgentCode.DecodeFailure, msg: s.msg }) + "\n");
      case "line":
        return void answerLine(s.text);
      case "frame":
        return void host(s.call).then(
          (out) => {
            if (!sock.destroyed) sock.end(encodeAnswer(out.exitCode, out.stdout ? out.stdout + "\n" : ""));
          },
          (e: unknown) => {
            log.error({ err: String(e) }, "forwarded plugin call failed");
            sock.destroy();
          },
        );
    }
  };
  const answerLine = async (line: string) => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return closeWith(
        sock,
        JSON.stringify({ ok: false, code: AgentCode.DecodeFailure, msg: "request is not valid JSON" }) + "\n",
      );
    }
    const res = await dispatch(value).catch((e: unknown): AgentResponse => {
      log.error({ err: String(e) }, "request failed unexpectedly");
      return { ok: false, code: AgentCode.Internal, msg: "internal error in the weft agent" };
    });
    if (!sock.destroyed) sock.end(JSON.stringify(res) + "\n");
  };
  sock.on("data", (chunk: Buffer) => on(reader.push(chunk)));
  // A client that half-closes without a newline still gets an answer.
  sock.on("end", () => on(reader.end()));
}
