// The two request encodings the agent's socket accepts, one per connection:
//  - a frame from the native plugin forwarder (src/plugin/forwarder.c): the runtime's whole
//    plugin call (environment + stdin) in, the plugin's answer (exit code + stdout) out. It starts
//    with a magic line, so an older agent answers it with a JSON error, which tells the forwarder
//    to fall back to the full plugin.
//      request:  "WEFTCNI1\n", u32 env bytes, env ("K=V\0" ...), u32 stdin bytes, stdin
//      response: "WEFTCNI1", i32 exit code, u32 stdout bytes, stdout        (big-endian)
//  - one JSON line (src/agent-api/schema.ts), answered with one JSON line; the client may
//    half-close instead of ending the line.
// RequestReader takes the bytes as they arrive and copies them once, when the request is whole.
import { MAX_CONFIG_BYTES, MAX_ENV_BYTES, MAX_REQUEST_BYTES } from "./limits.js";

export const FRAME_MAGIC = "WEFTCNI1";
const HEAD = Buffer.from(FRAME_MAGIC + "\n");

/** One plugin invocation as the runtime made it. */
export interface ForwardedCall {
  env: Record<string, string>;
  stdin: Buffer;
}

export interface ReadLimits {
  /** A JSON-line request. */
  maxLine: number;
  /** A frame's environment. */
  maxEnv: number;
  /** A frame's stdin: the same cap as the plugin's own stdin. */
  maxStdin: number;
}

export const DEFAULT_READ_LIMITS: ReadLimits = {
  maxLine: MAX_REQUEST_BYTES,
  maxEnv: MAX_ENV_BYTES,
  maxStdin: MAX_CONFIG_BYTES,
};

export type ReadState =
  | { state: "incomplete" }
  /** The client closed without sending anything (a liveness probe). */
  | { state: "empty" }
  | { state: "line"; text: string }
  | { state: "frame"; call: ForwardedCall }
  /** frame: whether the bytes began as a frame (so the answer can be one); tooLarge: a cap was hit. */
  | { state: "invalid"; frame: boolean; tooLarge: boolean; msg: string };

/** true: a frame; false: not one (a JSON line); undefined: too few bytes yet to tell. */
export function isFrame(buf: Buffer): boolean | undefined {
  const n = Math.min(buf.length, HEAD.length);
  if (!buf.subarray(0, n).equals(HEAD.subarray(0, n))) return false;
  return n === HEAD.length ? true : undefined;
}

/**
 * Collects one request's bytes. Each chunk is looked at once (a newline search, or the two length
 * fields when they arrive) and the whole is concatenated once: a client sending many small pieces
 * costs linear time, and no more than the caps in memory.
 */
export class RequestReader {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private kind: boolean | undefined;
  private envLen: number | undefined;
  private total: number | undefined;
  private finished = false;

  constructor(private readonly limits: ReadLimits = DEFAULT_READ_LIMITS) {}

  /** Whether the bytes so far may begin a frame (a few bytes of the magic count), to answer in kind. */
  get isFrame(): boolean {
    return this.kind !== false && this.size > 0;
  }

  push(chunk: Buffer): ReadState {
    if (this.finished) return { state: "incomplete" };
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.kind === undefined) {
      this.kind = isFrame(this.bytesAt(0, Math.min(this.size, HEAD.length)));
      if (this.kind === false) return this.settle(this.lineIn(0));
      if (this.kind === undefined) return { state: "incomplete" };
      return this.settle(this.frameState());
    }
    return this.settle(this.kind ? this.frameState() : this.lineIn(this.chunks.length - 1));
  }

  /** The client half-closed: a JSON request may end without its newline; a frame may not. */
  end(): ReadState {
    if (this.finished) return { state: "incomplete" };
    if (this.size === 0) return this.settle({ state: "empty" });
    if (this.kind !== false)
      return this.settle({ state: "invalid", frame: true, tooLarge: false, msg: "invalid plugin frame: truncated" });
    const text = Buffer.concat(this.chunks).toString("utf8");
    if (!text.trim())
      return this.settle({
        state: "invalid",
        frame: false,
        tooLarge: false,
        msg: "the connection closed without a request",
      });
    return this.settle({ state: "line", text });
  }

  private settle(s: ReadState): ReadState {
    if (s.state !== "incomplete") {
      this.finished = true;
      this.chunks.length = 0;
    }
    return s;
  }

  /** Looks for the newline in chunks from index `from` on (each chunk is searched once). */
  private lineIn(from: number): ReadState {
    let base = this.size;
    for (let i = this.chunks.length - 1; i >= from; i--) base -= this.chunks[i].length;
    for (let i = from; i < this.chunks.length; i++) {
      const nl = this.chunks[i].indexOf(10);
      if (nl >= 0) {
        const at = base + nl;
        if (at > this.limits.maxLine) break;
        return { state: "line", text: Buffer.concat(this.chunks).subarray(0, at).toString("utf8") };
      }
      base += this.chunks[i].length;
    }
    if (this.size > this.limits.maxLine)
      return {
        state: "invalid",
        frame: false,
        tooLarge: true,
        msg: `request larger than ${this.limits.maxLine} bytes`,
      };
    return { state: "incomplete" };
  }

  private frameState(): ReadState {
    const invalid = (tooLarge: boolean, msg: string): ReadState => ({
      state: "invalid",
      frame: true,
      tooLarge,
      msg: `invalid plugin frame: ${msg}`,
    });
    const envAt = HEAD.length;
    if (this.envLen === undefined) {
      if (this.size < envAt + 4) return { state: "incomplete" };
      this.envLen = this.bytesAt(envAt, 4).readUInt32BE(0);
      if (this.envLen > this.limits.maxEnv) return invalid(true, `environment larger than ${this.limits.maxEnv} bytes`);
    }
    const stdinAt = envAt + 4 + this.envLen;
    if (this.total === undefined) {
      if (this.size < stdinAt + 4) return { state: "incomplete" };
      const stdinLen = this.bytesAt(stdinAt, 4).readUInt32BE(0);
      if (stdinLen > this.limits.maxStdin) return invalid(true, `stdin larger than ${this.limits.maxStdin} bytes`);
      this.total = stdinAt + 4 + stdinLen;
    }
    if (this.size < this.total) return { state: "incomplete" };
    if (this.size > this.total) return invalid(false, "bytes after the end of the frame");
    const buf = Buffer.concat(this.chunks, this.size);
    return {
      state: "frame",
      call: { env: parseEnviron(buf.subarray(envAt + 4, stdinAt)), stdin: buf.subarray(stdinAt + 4) },
    };
  }

  /** n bytes from offset `at`, copied out of the chunks (used for a few header bytes only). */
  private bytesAt(at: number, n: number): Buffer {
    const out = Buffer.alloc(n);
    let pos = 0;
    let got = 0;
    for (const c of this.chunks) {
      if (got === n) break;
      const end = pos + c.length;
      if (end > at + got) {
        const from = at + got - pos;
        got += c.copy(out, got, from, Math.min(c.length, from + n - got));
      }
      pos = end;
    }
    return out;
  }
}

/** "K=V\0K=V\0": the first '=' splits; entries without one are not variables and are dropped. */
function parseEnviron(b: Buffer): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of b.toString("utf8").split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

export function encodeFrame(call: ForwardedCall): Buffer {
  const env = Buffer.from(
    Object.entries(call.env)
      .map(([k, v]) => `${k}=${v}\0`)
      .join(""),
  );
  const len = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  return Buffer.concat([HEAD, len(env.length), env, len(call.stdin.length), call.stdin]);
}

export function encodeAnswer(exitCode: number, stdout: string): Buffer {
  const out = Buffer.from(stdout);
  const head = Buffer.alloc(FRAME_MAGIC.length + 8);
  head.write(FRAME_MAGIC, 0, "latin1");
  head.writeInt32BE(exitCode, FRAME_MAGIC.length);
  head.writeUInt32BE(out.length, FRAME_MAGIC.length + 4);
  return Buffer.concat([head, out]);
}
