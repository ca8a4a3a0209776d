// Per-key serialization (one pod attachment at a time), a counting semaphore (bounded kernel
// work, so 100 concurrent ADDs don't fork 300 processes at once), and the one-agent-per-network-
// namespace lock.
import { connect, createServer } from "node:net";

export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  isLocked(key: string): boolean {
    return this.tails.has(key);
  }

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export class Semaphore {
  private waiting: (() => void)[] = [];
  private active = 0;
  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Another live agent serves this network namespace. */
export class NetnsTaken extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NetnsTaken";
  }
}

/** What the holder tells a refused agent, so its message names the agent it yields to. */
interface HolderInfo {
  pid: number;
  socket: string;
  stateDir: string;
}

// A Linux abstract unix socket belongs to the network namespace it is bound in (not to any file
// or socket path), and the kernel releases it when the process dies, kill -9 included. So binding
// this name is a lock on the namespace itself: one agent per namespace, whatever --socket or
// --state-dir each was given, and agents in different namespaces of one machine never collide.
const NETNS_LOCK_NAME = "\0weft-agent-netns-lock";

export interface NetnsLock {
  release(): Promise<void>;
}

/**
 * Takes this network namespace's agent lock for the life of the process, or throws NetnsTaken
 * (naming the holder when it answers) without having changed anything.
 */
export async function lockNetns(me: { socket: string; stateDir: string }): Promise<NetnsLock> {
  const info = JSON.stringify({ pid: process.pid, socket: me.socket, stateDir: me.stateDir } satisfies HolderInfo);
  const server = createServer((c) => c.end(info + "\n"));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(NETNS_LOCK_NAME, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
    const holder = await askHolder();
    const who = holder
      ? `agent pid ${holder.pid} (socket ${holder.socket}, state dir ${holder.stateDir})`
      : "another agent";
    throw new NetnsTaken(
      `${who} already serves this network namespace; one agent per namespace (a second one would take the first one's pods for orphans). Stop it first.`,
    );
  }
  // The lock must not keep a stopping agent alive.
  server.unref();
  return { release: () => new Promise<void>((r) => server.close(() => r())) };
}

function askHolder(): Promise<HolderInfo | null> {
  return new Promise((resolve) => {
    let text = "";
    const done = (v: HolderInfo | null) => {
      clearTimeout(timer);
      c.destroy();
      resolve(v);
    };
    const c = connect(NETNS_LOCK_NAME);
    const timer = setTimeout(() => done(null), 1000);
    c.setEncoding("utf8");
    c.on("data", (d: string) => {
      text += d;
      if (text.length > 4096) return done(null);
      if (!text.includes("\n")) return;
      try {
        const h = JSON.parse(text) as Partial<HolderInfo>;
        done(
          typeof h.pid === "number" && typeof h.socket === "string" && typeof h.stateDir === "string"
            ? (h as HolderInfo)
            : null,
        );
      } catch {
        done(null);
      }
    });
    c.on("error", () => done(null));
    c.on("end", () => done(null));
  });
}
