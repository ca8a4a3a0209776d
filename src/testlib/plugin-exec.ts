// Test helpers for the plugin executable: run dist/weft-cni exactly as a runtime does (clean
// environment, config on stdin) and a stand-in agent that speaks the JSON protocol (src/agent-api/schema.ts) on a unix
// socket in a temp dir, recording what the plugin sent. Used by src/plugin/*.test.ts only.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AgentRequest, AgentResponse } from "../agent-api/schema.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/**
 * The plugin as installed: the native forwarder. The stand-in agent below speaks only the JSON
 * protocol, as an older agent would, so every call here also proves the forwarder's fall back to
 * the full plugin (dist/weft-cni-full); its fast path is tested with a real agent in
 * src/e2e/cni/forwarder.test.ts.
 */
export const PLUGIN_BIN = join(root, "dist", "weft-cni");
/** The same plugin under plain node (tsc output), for debugging. */
export const PLUGIN_UNDER_NODE = [process.execPath, join(root, "dist", "plugin", "main.js")] as const;
/** Debian's containernetworking-plugins (host-local, portmap, bandwidth, ... v1.1.1). */
export const REFERENCE_DIR = "/usr/lib/cni";

export function binarySkipReason(): string | false {
  return existsSync(PLUGIN_BIN) ? false : `${PLUGIN_BIN} is not built: run \`node scripts/build-plugin.mjs\` first`;
}

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  json: unknown;
}

const RUNTIME_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Runs the plugin with only PATH and the given CNI_* variables; undefined values are left out. */
export function invoke(
  vars: Record<string, string | undefined>,
  input: Buffer | string,
  exe: string | readonly string[] = PLUGIN_BIN,
  opts: { holdStdinOpenMs?: number } = {},
): Promise<Outcome & { exitedBeforeStdinClosed: boolean }> {
  const [file, ...argv] = typeof exe === "string" ? [exe] : exe;
  const env: Record<string, string> = { PATH: RUNTIME_PATH };
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) env[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    let stdinClosed = false;
    let holdTimer: NodeJS.Timeout | undefined;
    child.on("close", (code) => {
      clearTimeout(holdTimer);
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? -1, stdout, stderr, json, exitedBeforeStdinClosed: !stdinClosed });
    });
    // The plugin stops reading oversized input: EPIPE here is expected.
    child.stdin.on("error", () => undefined);
    if (opts.holdStdinOpenMs === undefined) {
      stdinClosed = true;
      child.stdin.end(input);
    } else {
      // A caller that writes and then keeps stdin open.
      child.stdin.write(input);
      holdTimer = setTimeout(() => {
        stdinClosed = true;
        child.stdin.end();
      }, opts.holdStdinOpenMs);
    }
  });
}

export function tempDir(prefix = "weft-cni-"): { path: string; entries: () => string[]; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, entries: () => readdirSync(path), remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** What the stand-in agent does with a request: answer, never answer, or send raw bytes. */
export type FakeReply = AgentResponse | { hang: true } | { raw: string };

export class FakeAgent {
  readonly requests: AgentRequest[] = [];
  private server?: Server;
  private readonly open = new Set<Socket>();
  constructor(
    readonly path: string,
    public reply: (req: AgentRequest) => FakeReply = () => ({ ok: true }),
  ) {}

  async start(): Promise<this> {
    this.server = createServer((sock) => {
      this.open.add(sock);
      sock.on("close", () => this.open.delete(sock));
      let buf = "";
      sock.setEncoding("utf8");
      sock.on("error", () => undefined);
      sock.on("data", (c: string) => {
        buf += c;
        const nl = buf.indexOf("\n");
        if (nl < 0) return;
        let req: AgentRequest;
        try {
          req = JSON.parse(buf.slice(0, nl)) as AgentRequest;
        } catch {
          // As a real agent of the JSON-only protocol answers (e.g. the forwarder's frame).
          sock.end(JSON.stringify({ ok: false, code: 6, msg: "request is not valid JSON" }) + "\n");
          return;
        }
        this.requests.push(req);
        const r = this.reply(req);
        if ("hang" in r) return;
        sock.end("raw" in r ? r.raw : JSON.stringify(r) + "\n");
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once("error", reject);
      this.server!.listen(this.path, resolve);
    });
    return this;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    for (const sock of this.open) sock.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
