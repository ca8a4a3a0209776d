// The frame protocol the native plugin forwarder (src/plugin/forwarder.c) speaks on the agent's
// socket: the runtime's whole plugin call (environment + stdin) in, the plugin's answer (exit code
// + stdout) out. It starts with a magic line, so the same socket also serves the one-JSON-line
// protocol (src/agent/protocol.ts): an older agent answers the magic line with a JSON error,
// which tells the forwarder to fall back to the full plugin.
//   request:  "WEFTCNI1\n", u32 env bytes, env ("K=V\0" ...), u32 stdin bytes, stdin
//   response: "WEFTCNI1", i32 exit code, u32 stdout bytes, stdout        (big-endian)

export const FRAME_MAGIC = "WEFTCNI1";
const HEAD = Buffer.from(FRAME_MAGIC + "\n");

/** One plugin invocation as the runtime made it. */
export interface ForwardedCall {
  env: Record<string, string>;
  stdin: Buffer;
}

export type FrameParse =
  | { state: "incomplete" }
  | { state: "done"; call: ForwardedCall }
  | { state: "invalid"; msg: string };

/** true: a frame; false: not one (a JSON line); undefined: too few bytes yet to tell. */
export function isFrame(buf: Buffer): boolean | undefined {
  const n = Math.min(buf.length, HEAD.length);
  if (!buf.subarray(0, n).equals(HEAD.subarray(0, n))) return false;
  return n === HEAD.length ? true : undefined;
}

/** Parses a complete frame from the bytes received so far; `max` caps each length field. */
export function parseFrame(buf: Buffer, max: number): FrameParse {
  let off = HEAD.length;
  const field = (): Buffer | "incomplete" | "too large" => {
    if (buf.length < off + 4) return "incomplete";
    const n = buf.readUInt32BE(off);
    if (n > max) return "too large";
    if (buf.length < off + 4 + n) return "incomplete";
    const b = buf.subarray(off + 4, off + 4 + n);
    off += 4 + n;
    return b;
  };
  const env = field();
  if (env === "incomplete") return { state: "incomplete" };
  if (env === "too large") return { state: "invalid", msg: `environment larger than ${max} bytes` };
  const stdin = field();
  if (stdin === "incomplete") return { state: "incomplete" };
  if (stdin === "too large") return { state: "invalid", msg: `stdin larger than ${max} bytes` };
  if (off !== buf.length) return { state: "invalid", msg: "bytes after the end of the frame" };
  return { state: "done", call: { env: parseEnviron(env), stdin: Buffer.from(stdin) } };
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
  const env = Buffer.from(Object.entries(call.env).map(([k, v]) => `${k}=${v}\0`).join(""));
  const len = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
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
