// FRR 8.4 (Debian's frr) as a router in a network namespace of its own: zebra, bgpd, staticd and
// bfdd started directly (no watchfrr, no /etc/frr), each with this instance's config file, PID
// file, vty sockets (--vty_socket), zebra socket (-z) and BFD control socket (--bfdctl) in one
// directory, so several instances never share a path. FRR drops to its default user (frr) after
// start-up: the directory and its files belong to frr. Instances are found again by PID file and
// command line, stopped only by those PIDs, and queried with vtysh through argument arrays.
import { existsSync, readFileSync } from "node:fs";
import { chmod, chown, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { isAbsolute, join, normalize } from "node:path";
import { KernelCommandError, run } from "./exec.js";
import { netnsPath, InvalidKernelInput } from "./validate.js";
import { endProcess, pidFromFile, procCmdline } from "./proc.js";

export const FRR_BIN_DIR = "/usr/lib/frr";
export const VTYSH_BIN = "/usr/bin/vtysh";
/** Started in this order (zebra first: the others connect to its socket), stopped in reverse. */
export const FRR_DAEMONS = ["zebra", "staticd", "bfdd", "bgpd"] as const;
export type FrrDaemon = (typeof FRR_DAEMONS)[number];

export class FrrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrrError";
  }
}

/** One FRR instance's files, all in one directory owned by the frr user. */
export interface FrrPaths {
  readonly dir: string;
  readonly log: string;
  readonly zserv: string;
  readonly bfdctl: string;
  config(d: FrrDaemon): string;
  pidfile(d: FrrDaemon): string;
}

export function frrPaths(dir: string): FrrPaths {
  // The paths go into the daemons' argv: refuse what could be read as something else.
  if (!isAbsolute(dir) || normalize(dir) !== dir || /[\s"'\\\0]/.test(dir) || dir.length > 80)
    throw new InvalidKernelInput(
      `FRR directory "${dir}" must be an absolute, normalized path without spaces or quotes, at most 80 characters (unix socket paths are short)`,
    );
  return {
    dir,
    log: join(dir, "frr.log"),
    zserv: join(dir, "zserv.api"),
    bfdctl: join(dir, "bfdd.sock"),
    config: (d) => join(dir, `${d}.conf`),
    pidfile: (d) => join(dir, `${d}.pid`),
  };
}

/** The config text of each daemon; a daemon without one gets an empty config. */
export type FrrConfig = Partial<Record<FrrDaemon, string>>;

function needFrr(): void {
  for (const d of FRR_DAEMONS)
    if (!existsSync(join(FRR_BIN_DIR, d)))
      throw new FrrError(`the lab's top-of-rack routers need FRR (${join(FRR_BIN_DIR, d)}): apt-get install frr`);
  if (!existsSync(VTYSH_BIN)) throw new FrrError(`the lab's routers need vtysh (${VTYSH_BIN}): apt-get install frr`);
}

/** uid and gid of the frr user and group (the package makes both). */
function frrIds(): { uid: number; gid: number } {
  const find = (file: string, name: string): number | undefined => {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === name) return Number(f[2]);
    }
    return undefined;
  };
  const uid = find("/etc/passwd", "frr");
  const gid = find("/etc/group", "frr");
  if (uid === undefined || gid === undefined)
    throw new FrrError("no frr user or group on this machine: apt-get install frr");
  return { uid, gid };
}

/** Makes the directory (frr's, 0750) and writes every daemon's config (frr's, 0640), atomically each. */
export async function writeFrrConfig(p: FrrPaths, cfg: FrrConfig): Promise<void> {
  needFrr();
  const { uid, gid } = frrIds();
  await mkdir(p.dir, { recursive: true, mode: 0o750 });
  await chown(p.dir, uid, gid);
  await chmod(p.dir, 0o750);
  for (const d of FRR_DAEMONS) {
    const tmp = `${p.config(d)}.tmp`;
    await writeFile(tmp, cfg[d] ?? "", { mode: 0o640 });
    await chown(tmp, uid, gid);
    await rename(tmp, p.config(d));
  }
}

/**
 * The PID of this instance's daemon d, or null. A PID file alone is no identity (PIDs are reused):
 * the process must be alive, be that daemon, and have been started with this instance's PID file.
 */
export async function findFrrDaemon(p: FrrPaths, d: FrrDaemon): Promise<number | null> {
  const pid = await pidFromFile(p.pidfile(d));
  if (pid === null) return null;
  const argv = procCmdline(pid);
  if (!argv || argv[0] !== join(FRR_BIN_DIR, d)) return null;
  const i = argv.indexOf("-i");
  return i >= 0 && argv[i + 1] === p.pidfile(d) ? pid : null;
}

/** PIDs of the instance's running daemons. */
export async function findFrr(p: FrrPaths): Promise<Partial<Record<FrrDaemon, number>>> {
  const out: Partial<Record<FrrDaemon, number>> = {};
  for (const d of FRR_DAEMONS) {
    const pid = await findFrrDaemon(p, d);
    if (pid !== null) out[d] = pid;
  }
  return out;
}

export function daemonArgv(p: FrrPaths, d: FrrDaemon): string[] {
  return [
    join(FRR_BIN_DIR, d),
    "-d",
    "-f",
    p.config(d),
    "-i",
    p.pidfile(d),
    "-z",
    p.zserv,
    "--vty_socket",
    p.dir,
    "--log",
    `file:${p.log}`,
    "-u",
    "frr",
    "-g",
    "frr",
    ...(d === "bfdd" ? ["--bfdctl", p.bfdctl] : []),
  ];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Starts the daemons not yet running (each daemonizes itself: not our child), in the namespace
 * `netns` (a name under /run/netns or a path), and waits until each answers on its vty socket.
 * Returns every daemon's PID.
 */
export async function startFrr(p: FrrPaths, netns: string, timeoutMs = 15_000): Promise<Record<FrrDaemon, number>> {
  needFrr();
  const ns = netnsPath(netns.startsWith("/") ? netns : `/run/netns/${netns}`);
  const pids: Partial<Record<FrrDaemon, number>> = {};
  for (const d of FRR_DAEMONS) {
    let pid = await findFrrDaemon(p, d);
    if (pid === null) {
      await rm(join(p.dir, `${d}.vty`), { force: true });
      try {
        await run(daemonArgv(p, d), { netns: ns });
      } catch (e) {
        throw new FrrError(
          `could not start FRR ${d} in ${netns}: ${e instanceof KernelCommandError ? e.stderr.trim() : String(e)}; see ${p.log}`,
        );
      }
      const until = Date.now() + timeoutMs;
      while ((pid = await findFrrDaemon(p, d)) === null || !(await answers(p, d))) {
        if (Date.now() > until) throw new FrrError(`FRR ${d} did not come up within ${timeoutMs} ms; see ${p.log}`);
        await sleep(20);
      }
    }
    pids[d] = pid;
  }
  return pids as Record<FrrDaemon, number>;
}

async function answers(p: FrrPaths, d: FrrDaemon): Promise<boolean> {
  return vtysh(p, ["show version"], { daemon: d, timeoutMs: 2000 }).then(
    () => true,
    () => false,
  );
}

/**
 * Runs vtysh commands (each one `-c` argument, never through a shell) against this instance;
 * returns the output. `daemon` limits vtysh to one daemon.
 */
export async function vtysh(
  p: FrrPaths,
  commands: readonly string[],
  o: { daemon?: FrrDaemon; timeoutMs?: number } = {},
): Promise<string> {
  if (commands.length === 0) throw new InvalidKernelInput("vtysh: no command");
  for (const c of commands)
    if (/[\n\r\0]/.test(c)) throw new InvalidKernelInput(`vtysh command "${c}" holds a line break`);
  const argv = [
    VTYSH_BIN,
    "--vty_socket",
    p.dir,
    ...(o.daemon ? ["-d", o.daemon] : []),
    ...commands.flatMap((c) => ["-c", c]),
  ];
  try {
    return await run(argv, { timeoutMs: o.timeoutMs ?? 10_000 });
  } catch (e) {
    const why = e instanceof KernelCommandError ? e.stderr.trim() || `exit ${e.exitCode}` : String(e);
    throw new FrrError(`vtysh ${commands.join("; ")}: ${why}`);
  }
}

/** A `show ... json` command's output, parsed. */
export async function vtyshJson<T = unknown>(p: FrrPaths, command: string, daemon?: FrrDaemon): Promise<T> {
  if (!/\bjson$/.test(command)) throw new InvalidKernelInput(`vtyshJson: "${command}" does not end in json`);
  const out = await vtysh(p, [command], daemon ? { daemon } : {});
  try {
    return JSON.parse(out) as T;
  } catch {
    throw new FrrError(`vtysh ${command}: not JSON: ${out.slice(0, 200)}`);
  }
}

/**
 * Ends this instance's daemons (SIGTERM, then SIGKILL after graceMs), in reverse start order, only
 * by the PIDs their PID files name and their command lines confirm. Returns the PIDs ended.
 */
export async function stopFrr(p: FrrPaths, graceMs = 3000): Promise<number[]> {
  const ended: number[] = [];
  for (const d of [...FRR_DAEMONS].reverse()) {
    const pid = await findFrrDaemon(p, d);
    if (pid === null) continue;
    await endProcess(pid, graceMs);
    ended.push(pid);
  }
  return ended;
}

/** Removes the instance's files (after stopFrr). */
export async function removeFrrFiles(p: FrrPaths): Promise<void> {
  await rm(p.dir, { recursive: true, force: true });
}
