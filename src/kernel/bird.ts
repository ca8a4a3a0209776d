// BIRD 2 (Debian's bird2) as a daemon beside the agent: started detached inside the node's network
// namespace with its own config, control socket and PID file, found again by PID file and socket
// when the agent restarts, reconfigured with `birdc configure`, stopped only by the PID it wrote.
// BIRD must outlive the agent (its `persist` kernel routes and BGP sessions carry the pods'
// traffic meanwhile), so nothing here ties it to the agent's process or process group.
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { isAbsolute, join, normalize } from "node:path";
import { KernelCommandError, run, runStatus } from "./exec.js";
import { listRoutes, type PeerRoute } from "./peer-route.js";
import { write, type KernelContext } from "./tracked.js";
import { netnsPath, InvalidKernelInput } from "./validate.js";
import { endProcess, pidFromFile, procCmdline } from "./proc.js";

export const BIRD_BIN = "/usr/sbin/bird";
export const BIRDC_BIN = "/usr/sbin/birdc";

/** A BIRD instance's files, all in one root-only directory. */
export interface BirdPaths {
  readonly dir: string;
  readonly config: string;
  readonly socket: string;
  readonly pidfile: string;
  readonly log: string;
}

export function birdPaths(dir: string): BirdPaths {
  // The paths go into BIRD's argv and its config (inside quotes): refuse what could break out.
  if (!isAbsolute(dir) || normalize(dir) !== dir || /[\s"'\\\0]/.test(dir) || dir.length > 200)
    throw new InvalidKernelInput(
      `BIRD directory "${dir}" must be an absolute, normalized path without spaces or quotes`,
    );
  return {
    dir,
    config: join(dir, "bird.conf"),
    socket: join(dir, "bird.ctl"),
    pidfile: join(dir, "bird.pid"),
    log: join(dir, "bird.log"),
  };
}

export class BirdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BirdError";
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The PID of the BIRD serving these paths, or null. A PID alone is no identity (PIDs are reused):
 * the process must be alive, be bird, and have been started with this control socket.
 */
export async function findBird(p: BirdPaths): Promise<number | null> {
  const pid = await pidFromFile(p.pidfile);
  if (pid === null) return null;
  const argv = procCmdline(pid);
  if (!argv || !/(^|\/)bird$/.test(argv[0] ?? "")) return null;
  const s = argv.indexOf("-s");
  return s >= 0 && argv[s + 1] === p.socket ? pid : null;
}

function needBird(): void {
  if (!existsSync(BIRD_BIN) || !existsSync(BIRDC_BIN))
    throw new BirdError(`the bgp backend needs BIRD 2 (${BIRD_BIN}, ${BIRDC_BIN}): apt-get install bird2`);
}

/** The instance's directory, root-only (the control socket inside it gives full control of routing). */
async function ensureDir(p: BirdPaths): Promise<void> {
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  await chmod(p.dir, 0o700);
}

/** Checks a config with `bird -p` (parse only): throws BirdError with BIRD's message. */
export async function checkBirdConfig(file: string): Promise<void> {
  needBird();
  const r = await runStatus([BIRD_BIN, "-p", "-c", file]);
  if (r.code !== 0) throw new BirdError(`BIRD refused the config ${file}: ${(r.stderr || r.stdout).trim()}`);
}

/**
 * Writes the config atomically (a checked temporary file renamed over the old one); returns false
 * and changes nothing when the file already holds exactly this text. A config BIRD refuses never
 * replaces the one BIRD runs.
 */
export async function writeBirdConfig(p: BirdPaths, text: string): Promise<boolean> {
  await ensureDir(p);
  const old = await readFile(p.config, "utf8").catch(() => null);
  if (old === text) return false;
  const tmp = `${p.config}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  try {
    // The running BIRD checks it without a process spawn (`configure check`); else `bird -p`.
    if (existsSync(p.socket) && (await findBird(p)) !== null) {
      const out = await birdCommand(p, `configure check "${tmp}"`).catch((e: unknown) => {
        throw new BirdError(`BIRD refused the config ${tmp}: ${e instanceof Error ? e.message : String(e)}`);
      });
      if (!/Configuration OK/.test(out.join("\n")))
        throw new BirdError(`BIRD did not accept the config ${tmp}: ${out.join(" ").trim()}`);
    } else await checkBirdConfig(tmp);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await rename(tmp, p.config);
  return true;
}

export interface StartOptions {
  /** Network namespace path; the current one when absent. */
  readonly netns?: string;
  /**
   * Start in graceful-restart recovery (`bird -R`): the kernel protocol keeps the routes a
   * previous BIRD left (persist) until the BGP sessions have come back, instead of flushing them.
   */
  readonly recover?: boolean;
  readonly timeoutMs?: number;
}

/** Starts BIRD (it daemonizes itself: its own session, not our child) and waits until its socket answers. */
export async function startBird(p: BirdPaths, o: StartOptions = {}): Promise<number> {
  needBird();
  await ensureDir(p);
  // A BIRD that answers on the socket but is not the one the PID file names (the file was lost):
  // a second one would fight it over the BGP port and the kernel routes.
  if (
    existsSync(p.socket) &&
    (await birdc(p, ["show", "status"], 2000).then(
      () => true,
      () => false,
    ))
  )
    throw new BirdError(`a BIRD already answers on ${p.socket} but ${p.pidfile} does not name it: stop it, then retry`);
  await rm(p.socket, { force: true });
  const argv = [BIRD_BIN, "-c", p.config, "-s", p.socket, "-P", p.pidfile, ...(o.recover ? ["-R"] : [])];
  try {
    await run(argv, o.netns ? { netns: netnsPath(o.netns) } : {});
  } catch (e) {
    throw new BirdError(`could not start BIRD: ${e instanceof KernelCommandError ? e.stderr.trim() : String(e)}`);
  }
  const until = Date.now() + (o.timeoutMs ?? 10_000);
  for (;;) {
    const pid = await findBird(p);
    if (
      pid !== null &&
      (await birdc(p, ["show", "status"]).then(
        () => true,
        () => false,
      ))
    )
      return pid;
    if (Date.now() > until)
      throw new BirdError(`BIRD did not come up within ${o.timeoutMs ?? 10_000} ms; see ${p.log}`);
    await sleep(20);
  }
}

/** Runs a birdc command on this instance's socket; returns its output. */
export async function birdc(p: BirdPaths, args: readonly string[], timeoutMs = 10_000): Promise<string> {
  // birdc talks over the unix socket only: no namespace needed.
  try {
    return await run([BIRDC_BIN, "-s", p.socket, ...args], { timeoutMs });
  } catch (e) {
    const why = e instanceof KernelCommandError ? e.stderr.trim() || `exit ${e.exitCode}` : String(e);
    throw new BirdError(`birdc ${args.join(" ")}: ${why}`);
  }
}

/**
 * One command over BIRD's control socket, without a birdc process (a reload is on the path of every
 * configuration change: two process spawns cost more than the whole reload). Returns the reply's
 * text lines; throws BirdError with BIRD's message for an error reply (codes 8xxx, 9xxx).
 */
export function birdCommand(p: BirdPaths, line: string, timeoutMs = 10_000): Promise<string[]> {
  if (/[\n\r\0]/.test(line)) return Promise.reject(new BirdError("a BIRD command is one line"));
  return new Promise((resolve, reject) => {
    const sock = createConnection(p.socket);
    let buf = "";
    let greeted = false;
    const lines: string[] = [];
    const done = (err: Error | null) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(lines);
    };
    const timer = setTimeout(
      () => done(new BirdError(`BIRD did not answer "${line}" within ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.setEncoding("utf8");
    sock.on("error", (e) => done(new BirdError(`BIRD's control socket ${p.socket}: ${e.message}`)));
    sock.on("data", (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        // "DDDD-text" continues, "DDDD text" ends a reply, " text" continues the previous code.
        const m = /^(\d{4})([ -])(.*)$/.exec(l);
        if (!greeted) {
          if (m && m[2] === " ") {
            greeted = true;
            sock.write(`${line}\n`);
          }
          continue;
        }
        lines.push(m ? m[3] : l.replace(/^ /, ""));
        if (m && /^[89]/.test(m[1])) return done(new BirdError(`BIRD: ${m[3]}`));
        if (m && m[2] === " ") return done(null);
      }
    });
  });
}

/** Makes the running BIRD read its config file again; throws with BIRD's message when it refuses. */
export async function configureBird(p: BirdPaths): Promise<void> {
  const out = (await birdCommand(p, "configure")).join("\n");
  // "Reconfigured", "Reconfiguration in progress" or "Reconfiguration already in progress, queueing new config".
  if (!/Reconfigur/.test(out)) throw new BirdError(`BIRD did not take the new config: ${out.trim()}`);
}

export interface BirdProtocol {
  readonly name: string;
  readonly proto: string;
  readonly state: string;
  readonly since: string;
  /** BGP: "Established", "Active", "Connect", "Idle", ... (BIRD's Info column). */
  readonly info: string;
}

/** `birdc show protocols`, parsed. */
export async function birdProtocols(p: BirdPaths): Promise<BirdProtocol[]> {
  return parseProtocols(await birdc(p, ["show", "protocols"]));
}

export function parseProtocols(out: string): BirdProtocol[] {
  const rows: BirdProtocol[] = [];
  for (const line of out.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || f[0] === "Name" || f[0] === "BIRD") continue;
    // Name Proto Table State Since(1 or 2 words: date and time) Info...
    const sinceWords = /^\d{2}:\d{2}/.test(f[5] ?? "") ? 2 : 1;
    rows.push({
      name: f[0],
      proto: f[1],
      state: f[3],
      since: f.slice(4, 4 + sinceWords).join(" "),
      info: f.slice(4 + sinceWords).join(" "),
    });
  }
  return rows;
}

export interface BirdProtocolDetail extends BirdProtocol {
  /** BGP protocols: the neighbor's address ("Neighbor address:"). */
  readonly neighbor?: string;
  /** Summed over the protocol's channels ("Routes: N imported, M exported"). */
  readonly imported: number;
  readonly exported: number;
}

/** `birdc show protocols all`, parsed: each protocol's row, neighbor and route counts. */
export async function birdProtocolsAll(p: BirdPaths): Promise<BirdProtocolDetail[]> {
  return parseProtocolsAll(await birdc(p, ["show", "protocols", "all"]));
}

export function parseProtocolsAll(out: string): BirdProtocolDetail[] {
  const rows: Array<{ -readonly [K in keyof BirdProtocolDetail]: BirdProtocolDetail[K] }> = [];
  for (const line of out.split("\n")) {
    // A protocol's row starts at column 0; its details are indented below it.
    if (/^[A-Za-z]/.test(line)) {
      const r = parseProtocols(line)[0];
      if (r) rows.push({ ...r, imported: 0, exported: 0 });
      continue;
    }
    const cur = rows[rows.length - 1];
    if (!cur) continue;
    const n = /^\s+Neighbor address:\s+(\S+)/.exec(line);
    if (n) cur.neighbor = n[1];
    if (/^\s+Routes:/.test(line)) {
      cur.imported += Number(/(\d+) imported/.exec(line)?.[1] ?? 0);
      cur.exported += Number(/(\d+) exported/.exec(line)?.[1] ?? 0);
    }
  }
  return rows;
}

/** Whether BIRD answers on its socket ("Daemon is up and running"), and what it says. */
export async function birdStatus(p: BirdPaths): Promise<{ ok: boolean; detail: string }> {
  try {
    const out = await birdc(p, ["show", "status"], 3000);
    const version = /BIRD (\S+)/.exec(out)?.[1];
    const up = /Daemon is up and running/.test(out);
    return {
      ok: up,
      detail: up ? `BIRD ${version ?? ""} up`.replace("  ", " ") : (out.trim().split("\n").pop() ?? ""),
    };
  } catch (e) {
    return { ok: false, detail: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * Ends the BIRD serving these paths (SIGTERM, then SIGKILL after graceMs) if it is the one its
 * PID file names; returns its PID or null. Never signals a process that is not that BIRD.
 */
export async function stopBird(p: BirdPaths, graceMs = 3000): Promise<number | null> {
  const pid = await findBird(p);
  if (pid === null) return null;
  await endProcess(pid, graceMs);
  return pid;
}

/** Removes the instance's files (after stopBird). */
export async function removeBirdFiles(p: BirdPaths): Promise<void> {
  await rm(p.dir, { recursive: true, force: true });
}

/** Route protocol number BIRD's kernel protocol marks its routes with (RTPROT_BIRD, "proto bird"). */
export const RTPROT_BIRD = 12;

/** Main-table routes BIRD installed (both families): dst, gateway and device. */
export async function listBirdRoutes(ctx: KernelContext): Promise<PeerRoute[]> {
  return listRoutes(ctx, RTPROT_BIRD);
}

/** Removes every route BIRD installed (what `persist` leaves behind once BIRD is stopped for good). */
export async function flushBirdRoutes(ctx: KernelContext): Promise<void> {
  for (const f of ["-4", "-6"])
    await write(ctx, ["ip", f, "route", "flush", "table", "main", "proto", String(RTPROT_BIRD)]);
}
