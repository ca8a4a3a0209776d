// Detached processes the lab starts (etcd, agents, kubelet, pod servers) and ends. A PID alone is
// not an identity (PIDs are reused), so each is recorded with its kernel start time and is only
// signalled while both still match.
import { spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { assertNotHostNetns } from "../kernel/nsfile.js";

export interface ProcRef {
  pid: number;
  /** /proc/PID/stat field 22 (start time in clock ticks since boot). */
  start: string;
}

export function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may contain spaces; fields after the last ')' are fixed.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const state = rest[0];
    if (state === "Z" || state === "X") return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

export function isAlive(p: ProcRef | undefined): boolean {
  return p !== undefined && procStart(p.pid) === p.start;
}

export interface DetachedOptions {
  cwd?: string;
  log: string;
  env?: NodeJS.ProcessEnv;
}

/** Starts argv in its own process group, stdout/stderr appended to log, not tied to this process. */
export function spawnDetached(argv: readonly string[], o: DetachedOptions): ProcRef {
  const fd = openSync(o.log, "a", 0o600);
  try {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: o.cwd,
      detached: true,
      stdio: ["ignore", fd, fd],
      env: o.env ?? childEnv(),
    });
    if (child.pid === undefined) throw new Error(`cannot start ${argv[0]}`);
    child.unref();
    // Reap it if it dies while we are still running, so it never lingers as a zombie.
    child.on("error", () => undefined);
    const start = procStart(child.pid);
    if (start === undefined) throw new Error(`${argv.join(" ")} exited at once; see ${o.log}`);
    return { pid: child.pid, start };
  } finally {
    closeSync(fd);
  }
}

/** Our environment minus what only slows node down (NODE_EXTRA_CA_CERTS: +40 ms per start). */
export function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Ends a recorded process and its process group: SIGTERM, then SIGKILL after graceMs.
 * Does nothing when the PID now belongs to someone else.
 */
export async function stopProc(p: ProcRef | undefined, graceMs = 3000): Promise<void> {
  if (!p || !isAlive(p)) return;
  signalGroup(p, "SIGTERM");
  const until = Date.now() + graceMs;
  while (Date.now() < until) {
    if (!isAlive(p)) return;
    await sleep(25);
  }
  signalGroup(p, "SIGKILL");
  for (let i = 0; i < 200 && isAlive(p); i++) await sleep(10);
}

function signalGroup(p: ProcRef, sig: NodeJS.Signals): void {
  try {
    // Our detached children lead their own group; fall back to the PID if it does not.
    process.kill(-p.pid, sig);
  } catch {
    try {
      process.kill(p.pid, sig);
    } catch {
      // already gone
    }
  }
}

/** The last lines of a log file, for error messages. */
export function logTail(path: string, lines = 5): string {
  try {
    const all = readFileSync(path, "utf8").trim().split("\n");
    const tail = all.slice(-lines);
    // A crash prints its cause first and a stack after it: keep the cause in view.
    const cause = all.slice(-60).find((l) => /^\w*Error\b|^Error:|"level":(50|60)/.test(l.trim()));
    return [...(cause && !tail.includes(cause) ? [cause.trim(), "..."] : []), ...tail].join(" | ");
  } catch {
    return "(no log)";
  }
}

/**
 * Processes whose network namespace is the named one (/run/netns/NAME). Used by `lab down` to end
 * what still runs inside a lab namespace (e.g. a pod server whose record was lost in a crash), so
 * no process keeps a deleted namespace alive.
 */
export function processesInNetns(name: string): number[] {
  let ino: number;
  try {
    ino = statSync(`/run/netns/${name}`).ino;
  } catch {
    return [];
  }
  // Never "every process of the machine": a name bound to the host's namespace is refused.
  assertNotHostNetns(`/run/netns/${name}`, `end the processes of network namespace "${name}"`);
  const want = `net:[${ino}]`;
  const out: number[] = [];
  for (const ent of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(ent)) continue;
    const pid = Number(ent);
    if (pid === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${ent}/ns/net`) === want) out.push(pid);
    } catch {
      // gone, or a kernel thread
    }
  }
  return out;
}

/** SIGKILLs every process inside the named namespace and waits until they are gone. */
export async function killNetnsProcesses(name: string): Promise<number> {
  const pids = processesInNetns(name);
  const refs = pids.map((pid) => ({ pid, start: procStart(pid) })).filter((r): r is ProcRef => r.start !== undefined);
  for (const r of refs) {
    try {
      process.kill(r.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (let i = 0; i < 200 && refs.some(isAlive); i++) await sleep(10);
  return refs.length;
}
