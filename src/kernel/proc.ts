// What /proc says about a process, for the daemons weft adopts by PID file (BIRD, FRR, wireguard-go,
// charon): a PID file alone is no identity (PIDs are reused), so callers check that the process is
// alive and is the daemon they started before they adopt or signal it.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

/** A file under /proc/<pid>/, or null when the process (or the file) is gone. */
export function procFile(pid: number, file: string): string | null {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8");
  } catch {
    return null;
  }
}

/** The process's argv, or null when it is gone. */
export function procCmdline(pid: number): string[] | null {
  const raw = procFile(pid, "cmdline");
  return raw === null ? null : raw.split("\0").filter(Boolean);
}

/** Running (any state but zombie or dead): a zombie's PID file still names it, yet it serves nothing. */
export function procAlive(pid: number): boolean {
  const stat = procFile(pid, "stat");
  if (stat === null) return false;
  const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  return state !== "Z" && state !== "X";
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Ends a process the caller has identified as its own daemon: SIGTERM, SIGKILL if it still runs after
 * graceMs, then waits (up to about 3 s more) until it is gone, so its sockets and devices are released.
 */
export async function endProcess(pid: number, graceMs: number): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  signal("SIGTERM");
  const until = Date.now() + graceMs;
  while (procAlive(pid) && Date.now() < until) await sleep(20);
  if (procAlive(pid)) signal("SIGKILL");
  for (let i = 0; i < 300 && procAlive(pid); i++) await sleep(10);
}

/**
 * The live process a PID file names, or null (no file, no number, PID 0/1, or the process gone).
 * The caller still checks that it is its own daemon (its argv) before adopting or signalling it.
 */
export async function pidFromFile(pidfile: string): Promise<number | null> {
  let pid: number;
  try {
    pid = Number((await readFile(pidfile, "utf8")).trim());
  } catch {
    return null;
  }
  return Number.isInteger(pid) && pid > 1 && procAlive(pid) ? pid : null;
}
