// Replays the DELs the plugin queued while no agent was running (src/plugin/del-queue.ts). Each
// file is the runtime's own call (CNI_* environment + stdin), run through the same in-agent plugin
// path a forwarded call takes (plugin-host.ts), so a delegated IPAM plugin's DEL runs too. A file
// is removed only after its DEL succeeded: a replay killed midway is replayed by the next start
// (DEL is idempotent). run.ts replays before it opens the socket, and once more right after (a
// plugin may have queued in between); an ADD of an attachment with a queued DEL waits for it.
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import type { AgentRequest, AgentResponse } from "../../agent-api/schema.js";
import { parseRequest } from "../../agent-api/schema.js";
import { MAX_CONFIG_BYTES, MAX_ENV_BYTES } from "../../agent-api/limits.js";
import { DEFAULT_SOCKET } from "../../cni/config.js";
import {
  checkQueueDir,
  delQueueDir,
  QUEUE_FILE,
  QUEUE_TEMP,
  QUEUE_VERSION,
  queueFileName,
  unqueue,
  type QueuedDel,
} from "../../plugin/del-queue.js";
import { pluginHost, type PluginHost } from "../plugin-host.js";
import { AgentCode } from "../codes.js";

/** A temp file this old belongs to a plugin that died mid-write, not to one still writing. */
const STALE_TEMP_MS = 60_000;

export interface DelQueueOptions {
  /** The agent's socket: the queue is beside it. */
  socket: string;
  log: Logger;
  /** The agent's own request handler (AgentService.handle). */
  handle: (req: AgentRequest) => Promise<AgentResponse>;
}

export interface ReplayOutcome {
  replayed: number;
  failed: number;
  /** Files that were not queue entries (bad JSON, wrong shape): logged and removed. */
  discarded: number;
}

export class DelQueue {
  readonly dir: string;
  private readonly host: PluginHost;
  /** Replays in flight, by file name: an ADD and a sweep never run the same file twice at once. */
  private readonly inFlight = new Map<string, Promise<boolean>>();

  constructor(private readonly o: DelQueueOptions) {
    this.dir = delQueueDir(o.socket);
    this.host = pluginHost({
      socket: o.socket,
      dispatch: async (value) => {
        const parsed = parseRequest(value);
        if (!parsed.ok) return { ok: false, code: AgentCode.InvalidEnvironment, msg: parsed.msg };
        return o.handle(parsed.req);
      },
    });
  }

  /** Replays every DEL queued for this agent; never throws (a failure stays queued). */
  async replayAll(): Promise<ReplayOutcome> {
    const out: ReplayOutcome = { replayed: 0, failed: 0, discarded: 0 };
    let names: string[];
    try {
      checkQueueDir(this.dir);
      names = readdirSync(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return out;
      // An unsafe queue is not read (someone else could have planted DELs); the agent still runs.
      this.o.log.error({ dir: this.dir, err: (e as Error).message }, "DEL queue not replayed");
      return out;
    }
    for (const name of names) {
      if (QUEUE_TEMP.test(name)) {
        await this.dropStaleTemp(name);
        continue;
      }
      if (!QUEUE_FILE.test(name)) continue;
      const r = await this.replay(name);
      if (r === "ok") out.replayed++;
      else if (r === "failed") out.failed++;
      else if (r === "discarded") out.discarded++;
    }
    if (out.replayed || out.failed || out.discarded) this.o.log.info({ dir: this.dir, ...out }, "queued DELs replayed");
    return out;
  }

  /**
   * Wraps the agent's handler: an ADD whose attachment has a queued DEL gets that DEL first (the
   * runtime asked for it earlier); if it cannot be done, the ADD is answered "try again later".
   */
  guard(handle: (req: AgentRequest) => Promise<AgentResponse>): (req: AgentRequest) => Promise<AgentResponse> {
    return async (req) => {
      if (req.op === "add") {
        const name = queueFileName(req);
        if (this.inFlight.has(name) || exists(join(this.dir, name))) {
          const r = await this.replay(name);
          if (r === "failed")
            return {
              ok: false,
              code: AgentCode.TryAgainLater,
              msg: `a DEL of this container queued while the agent was down could not be replayed yet (${this.dir}/${name}); see the agent's log`,
            };
        }
      }
      return handle(req);
    };
  }

  private replay(name: string): Promise<Replay> {
    const running = this.inFlight.get(name);
    if (running) return running.then((ok) => (ok ? "ok" : "failed"));
    const p = this.replayOnce(name);
    const done = p.then((r) => r !== "failed");
    this.inFlight.set(name, done);
    void done.finally(() => this.inFlight.delete(name));
    return p;
  }

  private async replayOnce(name: string): Promise<Replay> {
    const file = join(this.dir, name);
    let entry: QueuedDel & { socket: string };
    try {
      entry = readEntry(file, name);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return "gone";
      this.o.log.error({ file, err: (e as Error).message }, "not a queued DEL; removed");
      await unqueue(file);
      return "discarded";
    }
    // Agents whose sockets share a directory share the queue: each replays only its own DELs.
    if (resolve(entry.socket) !== resolve(this.o.socket)) return "another agent's";
    const out = await this.host({ env: entry.env, stdin: Buffer.from(entry.stdin, "base64") }).catch((e: unknown) => ({
      exitCode: 1,
      stdout: String(e),
    }));
    const who = { containerId: entry.env.CNI_CONTAINERID, ifname: entry.env.CNI_IFNAME, queuedAt: entry.queuedAt };
    if (out.exitCode !== 0) {
      this.o.log.error({ ...who, file, answer: out.stdout }, "replaying a queued DEL failed; kept for the next try");
      return "failed";
    }
    await unqueue(file);
    this.o.log.info(who, "queued DEL replayed");
    return "ok";
  }

  private async dropStaleTemp(name: string): Promise<void> {
    try {
      const st = lstatSync(join(this.dir, name));
      if (Date.now() - st.mtimeMs > STALE_TEMP_MS) await unqueue(join(this.dir, name));
    } catch {
      /* gone meanwhile */
    }
  }
}

type Replay = "ok" | "failed" | "discarded" | "gone" | "another agent's";

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads and checks one entry: a regular file of bounded size, the expected shape, and its name
 * the hash of the attachment it deletes (so a file cannot stand in for another pod's DEL). */
function readEntry(file: string, name: string): QueuedDel & { socket: string } {
  const st = lstatSync(file);
  if (!st.isFile()) throw new Error("not a regular file");
  const uid = process.geteuid?.() ?? st.uid;
  if (st.uid !== uid) throw new Error(`owned by uid ${st.uid}, not ${uid}`);
  // base64 grows stdin by 4/3; JSON escaping of the environment at most 6x.
  if (st.size > 2 * MAX_CONFIG_BYTES + 6 * MAX_ENV_BYTES) throw new Error(`too large (${st.size} bytes)`);
  const v = JSON.parse(readFileSync(file, "utf8")) as Partial<QueuedDel>;
  if (v.version !== QUEUE_VERSION) throw new Error(`unknown version ${String(v.version)}`);
  if (typeof v.env !== "object" || v.env === null || typeof v.stdin !== "string")
    throw new Error("missing env or stdin");
  const env: Record<string, string> = {};
  for (const [k, val] of Object.entries(v.env)) {
    if (!/^CNI_[A-Z_]+$/.test(k) || typeof val !== "string") throw new Error(`bad variable ${k}`);
    env[k] = val;
  }
  if (env.CNI_COMMAND !== "DEL") throw new Error(`CNI_COMMAND is ${env.CNI_COMMAND}, not DEL`);
  const conf = JSON.parse(Buffer.from(v.stdin, "base64").toString("utf8")) as { name?: unknown; socket?: unknown };
  const key = {
    network: typeof conf.name === "string" ? conf.name : "",
    containerId: env.CNI_CONTAINERID ?? "",
    ifname: env.CNI_IFNAME ?? "",
  };
  if (queueFileName(key) !== name) throw new Error("its name does not match the attachment it deletes");
  // The agent this DEL was for: the config's socket, or the plugin's default.
  const socket = typeof conf.socket === "string" ? conf.socket : DEFAULT_SOCKET;
  return { version: QUEUE_VERSION, queuedAt: String(v.queuedAt ?? ""), env, stdin: v.stdin, socket };
}
