// wireguard-go (Debian's wireguard-go) as a daemon beside the agent, and its UAPI. It is started
// detached (its own session, not tied to the agent's process group) inside the node's network
// namespace, with a PID file, and found again by PID file and UAPI socket when the agent restarts:
// it must outlive the agent, since it carries the pods' encrypted traffic meanwhile (Cilium runs it
// inside its agent, and pods lose connectivity on every agent restart).
//
// UAPI (https://www.wireguard.com/xplatform/): a stream socket /var/run/wireguard/<dev>.sock,
// "get=1\n\n" or "set=1\n...\n\n" answered by key=value lines ending in "errno=N". Keys are hex.
// The socket directory is shared by every network namespace on a host, so device names must be
// unique per host (the lab runs many nodes on one).
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { ifname, InvalidKernelInput, netnsPath } from "./validate.js";
import { endProcess, pidFromFile, procAlive, procCmdline } from "./proc.js";

export const WIREGUARD_GO_BIN = "/usr/bin/wireguard-go";
export const UAPI_DIR = "/var/run/wireguard";

export class WireguardError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WireguardError";
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function uapiSocket(dev: string): string {
  return join(UAPI_DIR, `${ifname(dev)}.sock`);
}

/**
 * The PID of the wireguard-go serving `dev` as the PID file names it, or null. A PID alone is no
 * identity (PIDs are reused): the process must be alive, be wireguard-go, and run this device.
 */
export async function findWireguardGo(pidfile: string, dev: string): Promise<number | null> {
  const pid = await pidFromFile(pidfile);
  if (pid === null) return null;
  const argv = procCmdline(pid);
  if (!argv || !/(^|\/)wireguard-go$/.test(argv[0] ?? "")) return null;
  return argv[argv.length - 1] === dev ? pid : null;
}

export interface StartWireguardOptions {
  /** Network namespace path; the current one when absent. */
  readonly netns?: string;
  /** wireguard-go's own log (its stdout and stderr). */
  readonly logFile: string;
  readonly pidfile: string;
  readonly timeoutMs?: number;
}

/**
 * Starts `wireguard-go -f DEV` detached in the namespace and waits until its UAPI answers; returns
 * its PID. Refuses when something already answers on the device's socket that the PID file does
 * not name (a second daemon would fight it for the device).
 */
export async function startWireguardGo(dev: string, o: StartWireguardOptions): Promise<number> {
  ifname(dev);
  if (!existsSync(WIREGUARD_GO_BIN))
    throw new WireguardError(
      `no kernel WireGuard here and no ${WIREGUARD_GO_BIN}: apt-get install wireguard-go (userspace WireGuard)`,
    );
  if (existsSync(uapiSocket(dev)) && (await uapiAnswers(dev)))
    throw new WireguardError(
      `a WireGuard daemon already answers on ${uapiSocket(dev)} but ${o.pidfile} does not name it: stop it, then retry`,
    );
  await mkdir(UAPI_DIR, { recursive: true, mode: 0o700 });
  const argv = [WIREGUARD_GO_BIN, "-f", dev];
  const full = o.netns ? ["nsenter", `--net=${netnsPath(o.netns)}`, "--", ...argv] : argv;
  const log = openSync(o.logFile, "a", 0o600);
  let pid: number | undefined;
  try {
    // detached: its own session, so neither a signal to the agent's group nor the agent's death reaches it.
    const child = spawn(full[0], full.slice(1), {
      detached: true,
      stdio: ["ignore", log, log],
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", LOG_LEVEL: "error" },
    });
    pid = child.pid;
    child.on("error", () => undefined);
    child.unref();
  } finally {
    closeSync(log);
  }
  if (pid === undefined) throw new WireguardError(`could not start ${WIREGUARD_GO_BIN}`);
  await writeFile(o.pidfile, `${pid}\n`, { mode: 0o600 });
  const until = Date.now() + (o.timeoutMs ?? 10_000);
  for (;;) {
    // nsenter execs wireguard-go, so the child's PID is the daemon's.
    if ((await findWireguardGo(o.pidfile, dev)) === pid && (await uapiAnswers(dev))) return pid;
    if (!procAlive(pid)) {
      const why = (await readFile(o.logFile, "utf8").catch(() => "")).trim().split("\n").slice(-3).join(" / ");
      throw new WireguardError(`wireguard-go for ${dev} exited at start: ${why || "no message"} (log ${o.logFile})`);
    }
    if (Date.now() > until) {
      await stopWireguardGo(o.pidfile, dev);
      throw new WireguardError(
        `wireguard-go for ${dev} did not answer on ${uapiSocket(dev)} within ${o.timeoutMs ?? 10_000} ms`,
      );
    }
    await sleep(10);
  }
}

/** Ends the wireguard-go the PID file names (SIGTERM, then SIGKILL); its device goes with it. Returns its PID or null. */
export async function stopWireguardGo(pidfile: string, dev: string, graceMs = 3000): Promise<number | null> {
  const pid = await findWireguardGo(pidfile, dev);
  if (pid !== null) {
    await endProcess(pid, graceMs);
  }
  await rm(pidfile, { force: true });
  return pid;
}

/** A private directory (keys, PID file, log). */
export async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

// ---- UAPI ------------------------------------------------------------------------------------

/** One exchange on the device's UAPI socket: the request's lines, the reply's lines (errno checked). */
export function uapi(dev: string, request: string, timeoutMs = 5000): Promise<string[]> {
  const path = uapiSocket(dev);
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new WireguardError(`${path}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      buf += d;
      // The reply ends with "errno=N\n\n".
      const m = /(^|\n)errno=(-?\d+)\n\n/.exec(buf);
      if (!m) return;
      clearTimeout(timer);
      sock.end();
      const lines = buf
        .slice(0, m.index + m[1].length)
        .split("\n")
        .filter(Boolean);
      if (m[2] !== "0") reject(new WireguardError(`${path}: the device refused the request (errno ${m[2]})`));
      else resolve(lines);
    });
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(new WireguardError(`${path}: ${e.message}`));
    });
    sock.write(request);
  });
}

async function uapiAnswers(dev: string): Promise<boolean> {
  return uapi(dev, "get=1\n\n", 1000).then(
    () => true,
    () => false,
  );
}

export interface WgPeerState {
  /** Hex public key (UAPI form). */
  readonly publicKey: string;
  readonly endpoint?: string;
  readonly allowedIPs: string[];
  readonly keepalive: number;
  /** Unix seconds; 0 = never. */
  readonly lastHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface WgDeviceState {
  /** Hex private key; "" when unset. Never log it. */
  readonly privateKey: string;
  readonly listenPort: number;
  readonly fwmark: number;
  readonly peers: WgPeerState[];
}

/** The device's state (`get=1`). */
export async function wgGet(dev: string): Promise<WgDeviceState> {
  const lines = await uapi(dev, "get=1\n\n");
  let privateKey = "";
  let listenPort = 0;
  let fwmark = 0;
  const peers: {
    publicKey: string;
    endpoint?: string;
    allowedIPs: string[];
    keepalive: number;
    sec: number;
    nsec: number;
    rxBytes: number;
    txBytes: number;
  }[] = [];
  for (const line of lines) {
    const i = line.indexOf("=");
    const k = line.slice(0, i);
    const v = line.slice(i + 1);
    const p = peers[peers.length - 1];
    if (k === "private_key") privateKey = v;
    else if (k === "listen_port") listenPort = Number(v);
    else if (k === "fwmark") fwmark = Number(v);
    else if (k === "public_key")
      peers.push({ publicKey: v, allowedIPs: [], keepalive: 0, sec: 0, nsec: 0, rxBytes: 0, txBytes: 0 });
    else if (!p) continue;
    else if (k === "endpoint") p.endpoint = v;
    else if (k === "allowed_ip") p.allowedIPs.push(v);
    else if (k === "persistent_keepalive_interval") p.keepalive = Number(v);
    else if (k === "last_handshake_time_sec") p.sec = Number(v);
    else if (k === "rx_bytes") p.rxBytes = Number(v);
    else if (k === "tx_bytes") p.txBytes = Number(v);
  }
  return {
    privateKey,
    listenPort,
    fwmark,
    peers: peers.map((p) => ({
      publicKey: p.publicKey,
      ...(p.endpoint ? { endpoint: p.endpoint } : {}),
      allowedIPs: p.allowedIPs.sort(),
      keepalive: p.keepalive,
      lastHandshake: p.sec,
      rxBytes: p.rxBytes,
      txBytes: p.txBytes,
    })),
  };
}

const HEX_KEY = /^[0-9a-f]{64}$/;
const ENDPOINT = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/;
const ALLOWED = /^[0-9a-fA-F:.]+\/\d{1,3}$/;

export type WgPeerOp =
  | { readonly op: "remove"; readonly publicKey: string }
  | {
      readonly op: "set";
      readonly publicKey: string;
      readonly endpoint: string;
      readonly allowedIPs: readonly string[];
      readonly keepalive: number;
    };

/** Device-level settings plus peer changes in one `set=1` (applied by the device as one request). */
export async function wgSet(
  dev: string,
  change: { privateKey?: string; listenPort?: number; fwmark?: number; peers?: readonly WgPeerOp[] },
): Promise<void> {
  const lines = ["set=1"];
  if (change.privateKey !== undefined) {
    if (!HEX_KEY.test(change.privateKey)) throw new InvalidKernelInput("WireGuard private key is not 32 bytes of hex");
    lines.push(`private_key=${change.privateKey}`);
  }
  if (change.listenPort !== undefined) {
    if (!Number.isInteger(change.listenPort) || change.listenPort < 1 || change.listenPort > 65535)
      throw new InvalidKernelInput(`WireGuard listen port ${change.listenPort} is not in 1..65535`);
    lines.push(`listen_port=${change.listenPort}`);
  }
  if (change.fwmark !== undefined) {
    if (!Number.isInteger(change.fwmark) || change.fwmark < 0 || change.fwmark > 0xffffffff)
      throw new InvalidKernelInput(`fwmark ${change.fwmark} is not a 32-bit number`);
    lines.push(`fwmark=${change.fwmark}`);
  }
  for (const p of change.peers ?? []) {
    if (!HEX_KEY.test(p.publicKey))
      throw new InvalidKernelInput(`WireGuard public key ${p.publicKey} is not 32 bytes of hex`);
    lines.push(`public_key=${p.publicKey}`);
    if (p.op === "remove") {
      lines.push("remove=true");
      continue;
    }
    if (!ENDPOINT.test(p.endpoint)) throw new InvalidKernelInput(`WireGuard endpoint "${p.endpoint}" is not IP:port`);
    lines.push(`endpoint=${p.endpoint}`, "replace_allowed_ips=true");
    for (const a of p.allowedIPs) {
      if (!ALLOWED.test(a)) throw new InvalidKernelInput(`WireGuard allowed IP "${a}" is not a CIDR`);
      lines.push(`allowed_ip=${a}`);
    }
    lines.push(`persistent_keepalive_interval=${p.keepalive}`);
  }
  await uapi(dev, lines.join("\n") + "\n\n");
}
