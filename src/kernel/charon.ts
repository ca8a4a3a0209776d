// strongSwan's charon as a daemon beside the agent, one per node network namespace: started
// detached with its own strongswan.conf (STRONGSWAN_CONF), its own root-only VICI socket and its
// own /run (charon's PID file path, /var/run/charon.pid, is compiled in, so each charon gets a
// private mount namespace in which its directory's run/ is bind-mounted over /run). Found again by
// PID file + socket when the agent restarts; configured with `swanctl --load-all` over VICI; stopped
// only by the PID it wrote. charon must outlive the agent (its SAs and the TUN device carry the pods'
// traffic meanwhile), so nothing here ties it to the agent's process or process group.
//
// This kernel has no ESP: charon's kernel-libipsec does ESP in userspace over a TUN device and
// always encapsulates in UDP 4500. It is listed before kernel-netlink in `load` so it owns IPsec
// (SAs, policies) while kernel-netlink keeps the routes and addresses.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { isAbsolute, join, normalize } from "node:path";
import { isIP } from "node:net";
import { KernelCommandError, run } from "./exec.js";
import { cidr as checkCidr, ip as checkIp, ifname as checkIfname, netnsPath, InvalidKernelInput } from "./validate.js";
import { endProcess, pidFromFile, procFile } from "./proc.js";

export const CHARON_BIN = "/usr/lib/ipsec/charon";
export const SWANCTL_BIN = "/usr/sbin/swanctl";

/** A charon instance's files, all in one root-only directory. */
export interface CharonPaths {
  readonly dir: string;
  /** strongswan.conf for this instance (passed as STRONGSWAN_CONF). */
  readonly conf: string;
  /** swanctl.conf with the connections and the PSK (0600). */
  readonly swanctl: string;
  /** VICI socket (inside the 0700 directory: root-only). */
  readonly socket: string;
  /** Bind-mounted over /run in charon's own mount namespace; holds charon.pid. */
  readonly rundir: string;
  readonly pidfile: string;
  readonly log: string;
}

export function charonPaths(dir: string): CharonPaths {
  // The paths go into argv, strongswan.conf and a unix:// URI: refuse what could break out.
  if (!isAbsolute(dir) || normalize(dir) !== dir || /[\s"'\\\0{}#=]/.test(dir) || dir.length > 80)
    throw new InvalidKernelInput(
      `charon directory "${dir}" must be an absolute, normalized path (at most 80 characters) without spaces, quotes or braces`,
    );
  const rundir = join(dir, "run");
  return {
    dir,
    conf: join(dir, "strongswan.conf"),
    swanctl: join(dir, "swanctl.conf"),
    socket: join(dir, "charon.vici"),
    rundir,
    pidfile: join(rundir, "charon.pid"),
    log: join(dir, "charon.log"),
  };
}

export class CharonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CharonError";
  }
}

// ---- strongswan.conf ----

export interface CharonOptions {
  /** MTU of the routes into libipsec's TUN device (the pod packets' size limit through the tunnel). */
  readonly tunMtu?: number;
  /** Routing table (and rule priority) charon puts the tunnel routes in. */
  readonly routingTable?: number;
  /** Log level for the ike/cfg/chd/net groups (0..4; 1 is quiet, secrets appear only at 4). */
  readonly logLevel?: number;
}

/** Plugins charon loads (no /etc/strongswan.d): kernel-libipsec strictly before kernel-netlink. */
export const CHARON_PLUGINS = [
  "random",
  "nonce",
  "aes",
  "sha1",
  "sha2",
  "hmac",
  "kdf",
  "gmp",
  "pem",
  "pkcs1",
  "x509",
  "pubkey",
  "kernel-libipsec",
  "kernel-netlink",
  "socket-default",
  "vici",
] as const;

export const DEFAULT_ROUTING_TABLE = 220;
export const DEFAULT_TUN_MTU = 1400;

/** This instance's strongswan.conf: nothing from /etc is read (no `include`). */
export function renderStrongswanConf(p: CharonPaths, o: CharonOptions = {}): string {
  const table = o.routingTable ?? DEFAULT_ROUTING_TABLE;
  const mtu = o.tunMtu ?? DEFAULT_TUN_MTU;
  const level = o.logLevel ?? 1;
  if (!Number.isInteger(table) || table < 1 || table > 252)
    throw new InvalidKernelInput(`routing table ${table} must be 1..252`);
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65000)
    throw new InvalidKernelInput(`TUN MTU ${mtu} must be 576..65000`);
  if (!Number.isInteger(level) || level < -1 || level > 3)
    throw new InvalidKernelInput(`charon log level ${level} must be -1..3 (4 would log keys)`);
  return `# Written by weft: this node's charon (kernel-libipsec: ESP in userspace over a TUN device).
charon {
  load_modular = no
  load = ${CHARON_PLUGINS.join(" ")}
  install_routes = yes
  routing_table = ${table}
  routing_table_prio = ${table}
  retransmit_tries = 3
  retransmit_timeout = 2.0
  plugins {
    vici {
      socket = unix://${p.socket}
    }
    kernel-libipsec {
      allow_peer_ts = no
    }
    kernel-netlink {
      # The tunnel routes carry this MTU: pod packets larger than what ESP-in-UDP fits are refused
      # at the source (PMTU) instead of fragmented.
      mtu = ${mtu}
    }
  }
  filelog {
    weft {
      path = ${p.log}
      time_format = %Y-%m-%dT%H:%M:%S
      ike_name = yes
      append = yes
      default = ${level}
      flush_line = yes
    }
  }
  syslog {
  }
}
`;
}

// ---- swanctl.conf (pure) ----

/** The shortest pre-shared key weft accepts, in bytes (the store keeps it hex-encoded). */
export const PSK_MIN_BYTES = 32;

export class IpsecConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IpsecConfigError";
  }
}

/** A PSK generation: id (1..) and the secret as hex (at least PSK_MIN_BYTES bytes). */
export interface PskGeneration {
  readonly id: number;
  readonly hex: string;
}

/** Throws IpsecConfigError for a PSK weft refuses; never puts the key in the message. */
export function checkPsk(psk: PskGeneration): void {
  if (!Number.isInteger(psk.id) || psk.id < 1 || psk.id > 65535)
    throw new IpsecConfigError(`IPsec PSK generation id ${String(psk.id)} must be an integer 1..65535`);
  if (typeof psk.hex !== "string" || !/^([0-9a-fA-F]{2})+$/.test(psk.hex))
    throw new IpsecConfigError(`IPsec PSK generation ${psk.id} is not hex-encoded (expected pairs of 0-9a-f)`);
  if (psk.hex.length / 2 < PSK_MIN_BYTES)
    throw new IpsecConfigError(
      `IPsec PSK generation ${psk.id} is too short: ${psk.hex.length / 2} bytes, need at least ${PSK_MIN_BYTES} (64 hex characters)`,
    );
}

export interface IpsecPeer {
  /** Peer node name (goes into the connection name: [a-z0-9.-]). */
  readonly name: string;
  /** The peer's underlay address (IKE and ESP-in-UDP go there). */
  readonly address: string;
  /** The peer's pod CIDRs. */
  readonly podCidrs: readonly string[];
}

export interface IpsecLocal {
  readonly name: string;
  readonly address: string;
  readonly podCidrs: readonly string[];
}

export interface SwanctlInput {
  readonly local: IpsecLocal;
  readonly peers: readonly IpsecPeer[];
  /** The PSK generations accepted now; the highest id is used (both are accepted during a rotation). */
  readonly psks: readonly PskGeneration[];
  /** Encrypt node address <-> node address too (beside pod CIDRs). */
  readonly nodeToNode?: boolean;
  /** CHILD_SA rekey time in seconds (default 3600); IKE_SA rekeys at 4x. */
  readonly rekeySeconds?: number;
  /** Dead peer detection interval in seconds (default 10). */
  readonly dpdSeconds?: number;
  readonly espProposal?: string;
  readonly ikeProposal?: string;
}

export const DEFAULT_ESP_PROPOSAL = "aes128-sha256";
export const DEFAULT_IKE_PROPOSAL = "aes128-sha256-modp2048";

const NAME_RE = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;
const PROPOSAL_RE = /^[a-z0-9]+(-[a-z0-9]+)*$/;

/** swanctl names a connection and its child after the peer: "weft-<peer>". */
export function connName(peer: string): string {
  if (!NAME_RE.test(peer)) throw new IpsecConfigError(`node name "${peer}" is not a DNS label-like name ([a-z0-9.-])`);
  return `weft-${peer}`;
}

function hostCidr(addr: string): string {
  return `${addr}/${isIP(addr) === 6 ? 128 : 32}`;
}

/** Orders addresses of one family numerically (the pair's initiator is the lower one). */
function compareAddr(a: string, b: string): number {
  const key = (x: string) =>
    isIP(x) === 4
      ? x
          .split(".")
          .map((o) => o.padStart(3, "0"))
          .join(".")
      : expandV6(x);
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}

function expandV6(x: string): string {
  const [head, tail = ""] = x.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = x.includes("::") ? [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t] : h;
  return groups.map((g) => g.padStart(4, "0")).join(":");
}

function family(c: string): number {
  return isIP(c.split("/")[0]);
}

/**
 * The swanctl.conf for one node: per peer one IKEv2 connection (PSK, DPD with restart, UDP
 * encapsulation forced) with one CHILD_SA (local pod CIDRs <-> peer pod CIDRs, plus node addresses
 * with nodeToNode). Both sides install a trap policy: its route into the TUN device exists before any
 * SA, and libipsec drops a packet that has no SA yet (never sent in clear). libipsec raises no acquire
 * for it, so the pair's initiator (lower address) also starts the SA at once (`trap|start`) and again
 * after DPD or a close; the responder waits for it.
 */
export function renderSwanctlConf(i: SwanctlInput): string {
  if (i.psks.length === 0) throw new IpsecConfigError("IPsec needs a pre-shared key: none is set");
  for (const k of i.psks) checkPsk(k);
  const rekey = i.rekeySeconds ?? 3600;
  const dpd = i.dpdSeconds ?? 10;
  if (!Number.isInteger(rekey) || rekey < 10 || rekey > 7 * 86400)
    throw new IpsecConfigError(`IPsec rekey time ${rekey}s must be a whole number of seconds, 10..604800`);
  if (!Number.isInteger(dpd) || dpd < 1 || dpd > 3600)
    throw new IpsecConfigError(`IPsec DPD interval ${dpd}s must be 1..3600`);
  const esp = i.espProposal ?? DEFAULT_ESP_PROPOSAL;
  const ike = i.ikeProposal ?? DEFAULT_IKE_PROPOSAL;
  for (const [what, v] of [
    ["ESP", esp],
    ["IKE", ike],
  ] as const)
    if (!PROPOSAL_RE.test(v))
      throw new IpsecConfigError(`${what} proposal "${v}" is not a strongSwan proposal (a-z0-9 joined by -)`);
  const local = i.local;
  connName(local.name);
  checkIp(local.address);
  local.podCidrs.forEach((c) => checkCidr(c));
  const seen = new Set<string>();
  const conns: string[] = [];
  for (const p of [...i.peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const name = connName(p.name);
    if (p.name === local.name) continue;
    if (seen.has(name)) throw new IpsecConfigError(`node "${p.name}" is listed twice`);
    seen.add(name);
    checkIp(p.address);
    p.podCidrs.forEach((c) => checkCidr(c));
    const fam = isIP(p.address);
    if (fam !== isIP(local.address)) continue; // IKE between families is not set up
    // One side of each pair initiates (the lower address): both at once would make two IKE_SAs.
    const initiator = compareAddr(local.address, p.address) < 0;
    const localTs = [...local.podCidrs, ...(i.nodeToNode ? [hostCidr(local.address)] : [])];
    const remoteTs = [...p.podCidrs, ...(i.nodeToNode ? [hostCidr(p.address)] : [])];
    // A pair with nothing in common (another family's pods only) has no traffic selectors to protect.
    if (!localTs.some((c) => remoteTs.some((r) => family(r) === family(c)))) continue;
    conns.push(`  ${name} {
    version = 2
    local_addrs = ${local.address}
    remote_addrs = ${p.address}
    proposals = ${ike}
    encap = yes
    mobike = no
    keyingtries = 0
    dpd_delay = ${dpd}s
    rekey_time = ${rekey * 4}s
    unique = replace
    local {
      auth = psk
      id = ${local.address}
    }
    remote {
      auth = psk
      id = ${p.address}
    }
    children {
      ${name} {
        local_ts = ${localTs.join(",")}
        remote_ts = ${remoteTs.join(",")}
        esp_proposals = ${esp}
        mode = tunnel
        rekey_time = ${rekey}s
        life_time = ${Math.ceil(rekey * 1.1)}s
        start_action = ${initiator ? "trap|start" : "trap"}
        dpd_action = ${initiator ? "restart" : "trap"}
        close_action = ${initiator ? "start" : "trap"}
      }
    }
  }`);
  }
  // One shared secret per generation, for every IKE identity of the cluster's nodes (any pair).
  const ids = [local.address, ...i.peers.map((p) => p.address)];
  const uniq = [...new Set(ids)].sort();
  const secrets = [...i.psks]
    .sort((a, b) => b.id - a.id)
    .map(
      (k) => `  ike-weft-${k.id} {
${uniq.map((a, n) => `    id-${n} = ${a}`).join("\n")}
    secret = 0x${k.hex.toLowerCase()}
  }`,
    );
  return `# Written by weft (node ${local.name}). Holds the cluster's IPsec PSK: keep 0600.
connections {
${conns.join("\n")}
}
secrets {
${secrets.join("\n")}
}
`;
}

// ---- the daemon ----

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The PID of the charon serving these paths, or null. A PID alone is no identity (PIDs are reused):
 * the process must be alive, be charon, and run with this instance's STRONGSWAN_CONF.
 */
export async function findCharon(p: CharonPaths): Promise<number | null> {
  const pid = await pidFromFile(p.pidfile);
  if (pid === null) return null;
  const argv = (procFile(pid, "cmdline") ?? "").split("\0");
  if (!/(^|\/)charon$/.test(argv[0] ?? "")) return null;
  const env = (procFile(pid, "environ") ?? "").split("\0");
  return env.includes(`STRONGSWAN_CONF=${p.conf}`) ? pid : null;
}

function needCharon(): void {
  if (!existsSync(CHARON_BIN) || !existsSync(SWANCTL_BIN))
    throw new CharonError(
      `IPsec needs strongSwan's charon with kernel-libipsec and swanctl (${CHARON_BIN}, ${SWANCTL_BIN}): apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins`,
    );
}

async function ensureDir(p: CharonPaths): Promise<void> {
  for (const d of [p.dir, p.rundir]) {
    await mkdir(d, { recursive: true, mode: 0o700 });
    await chmod(d, 0o700);
  }
}

/** Runs swanctl against this instance's VICI socket; returns its output. */
export async function swanctl(p: CharonPaths, args: readonly string[], timeoutMs = 15_000): Promise<string> {
  try {
    return await run([SWANCTL_BIN, ...args, "--uri", `unix://${p.socket}`], { timeoutMs });
  } catch (e) {
    // swanctl reads the host's strongswan.conf and names every plugin it does not have: noise.
    const why =
      e instanceof KernelCommandError
        ? e.stderr
            .split("\n")
            .filter((l) => l.trim() && !/^plugin '/.test(l))
            .join("; ") || `exit ${e.exitCode}`
        : String(e);
    throw new CharonError(`swanctl ${args[0] ?? ""}: ${why}`);
  }
}

async function answers(p: CharonPaths): Promise<boolean> {
  if (!existsSync(p.socket)) return false;
  return swanctl(p, ["--stats"], 3000).then(
    () => true,
    () => false,
  );
}

export interface StartOptions extends CharonOptions {
  /** Network namespace path; the current one when absent. */
  readonly netns?: string;
  readonly timeoutMs?: number;
}

/**
 * Starts charon (or adopts the one already serving these paths) and waits until VICI answers;
 * returns its PID and whether it was already running.
 */
export async function startCharon(p: CharonPaths, o: StartOptions = {}): Promise<{ pid: number; adopted: boolean }> {
  needCharon();
  const existing = await findCharon(p);
  if (existing !== null && (await answers(p))) return { pid: existing, adopted: true };
  await ensureDir(p);
  if (existing === null && (await answers(p)))
    throw new CharonError(
      `a charon already answers on ${p.socket} but ${p.pidfile} does not name it: stop it, then retry`,
    );
  if (existing !== null) await stopCharon(p); // alive but deaf: start it again
  await writeFile(p.conf, renderStrongswanConf(p, o), { mode: 0o600 });
  await rm(p.socket, { force: true });
  await rm(p.pidfile, { force: true });
  const ns = o.netns ? netnsPath(o.netns) : null;
  // charon runs in the foreground: detached (its own session), its output to the log file, unref'd.
  // The fixed script only bind-mounts $1 over /run in the new mount namespace and execs $2: every
  // variable part is a positional argument, never part of the script text.
  const argv = [
    ...(ns ? ["nsenter", `--net=${ns}`, "--"] : []),
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    "/bin/sh",
    "-c",
    'mount --bind -- "$1" /run && exec "$2"',
    "weft-charon",
    p.rundir,
    CHARON_BIN,
  ];
  const fd = openSync(p.log, "a", 0o600);
  try {
    const child = spawn(argv[0], argv.slice(1), {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", STRONGSWAN_CONF: p.conf },
    });
    child.on("error", () => undefined);
    child.unref();
  } finally {
    closeSync(fd);
  }
  const limit = o.timeoutMs ?? 15_000;
  const until = Date.now() + limit;
  for (;;) {
    const pid = await findCharon(p);
    if (pid !== null && (await answers(p))) return { pid, adopted: false };
    if (Date.now() > until) throw new CharonError(`charon did not come up within ${limit} ms; see ${p.log}`);
    await sleep(50);
  }
}

/**
 * Writes swanctl.conf (0600, atomically) and loads it over VICI: connections and secrets not in the
 * file are unloaded. Returns false when the file already held exactly this text and charon has it.
 */
export async function loadSwanctl(p: CharonPaths, text: string, force = false): Promise<boolean> {
  await ensureDir(p);
  const old = await readFile(p.swanctl, "utf8").catch(() => null);
  if (old === text && !force) return false;
  const tmp = `${p.swanctl}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await chmod(tmp, 0o600);
  try {
    await swanctl(p, ["--load-all", "--clear", "--noprompt", "--file", tmp]);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await rename(tmp, p.swanctl);
  return true;
}

/** Asks charon to set up the named CHILD_SA now (rather than on the first packet); does not wait. */
export async function initiateChild(p: CharonPaths, child: string): Promise<void> {
  await swanctl(p, ["--initiate", "--child", child, "--timeout", "-1"]).catch(() => undefined);
}

export interface ChildSa {
  readonly name: string;
  readonly uniqueId: number;
  readonly state: string;
  readonly spiIn: string;
  readonly spiOut: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
  /** Seconds since installed. */
  readonly installTime: number;
  readonly rekeyTime: number;
  readonly localTs: readonly string[];
  readonly remoteTs: readonly string[];
}

export interface IkeSa {
  readonly name: string;
  readonly uniqueId: number;
  readonly state: string;
  readonly localHost: string;
  readonly remoteHost: string;
  readonly established: number;
  readonly encap: boolean;
  readonly children: readonly ChildSa[];
}

type Raw = { [k: string]: Raw | string | string[] };

/** Parses swanctl's --raw output (VICI messages as `key=value`, `key {…}`, `key [a b]`). */
export function parseRaw(text: string): Raw[] {
  const out: Raw[] = [];
  const tokens = text.match(/\{|\}|\[|\]|[^\s{}[\]=]+=[^\s{}[\]]*|[^\s{}[\]]+/g) ?? [];
  let i = 0;
  const section = (): Raw => {
    const r: Raw = {};
    while (i < tokens.length && tokens[i] !== "}") {
      const t = tokens[i++];
      const eq = t.indexOf("=");
      if (eq > 0 && !(eq === t.length - 1 && tokens[i] === "[")) {
        r[t.slice(0, eq)] = t.slice(eq + 1);
      } else if (eq > 0 || tokens[i] === "[") {
        // "key=[a b]" (swanctl --raw) or "key [a b]"
        i++;
        const l: string[] = [];
        while (i < tokens.length && tokens[i] !== "]") l.push(tokens[i++]);
        i++;
        r[eq > 0 ? t.slice(0, eq) : t] = l;
      } else if (tokens[i] === "{") {
        i++;
        r[t] = section();
        i++; // }
      }
    }
    return r;
  };
  while (i < tokens.length) {
    // "list-sa event {…}": skip the message name words, read the section.
    if (tokens[i] === "{") {
      i++;
      out.push(section());
      i++;
    } else i++;
  }
  return out;
}

const num = (v: unknown): number => (typeof v === "string" && v !== "" ? Number(v) : 0);
const str = (v: unknown): string => (typeof v === "string" ? v : "");
const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);

export function parseSas(text: string): IkeSa[] {
  const sas: IkeSa[] = [];
  for (const msg of parseRaw(text))
    for (const [name, v] of Object.entries(msg)) {
      if (typeof v !== "object" || Array.isArray(v)) continue;
      const kids = v["child-sas"];
      const children: ChildSa[] = [];
      if (kids && typeof kids === "object" && !Array.isArray(kids))
        for (const c of Object.values(kids)) {
          if (typeof c !== "object" || Array.isArray(c)) continue;
          children.push({
            name: str(c.name),
            uniqueId: num(c.uniqueid),
            state: str(c.state),
            spiIn: str(c["spi-in"]),
            spiOut: str(c["spi-out"]),
            bytesIn: num(c["bytes-in"]),
            bytesOut: num(c["bytes-out"]),
            packetsIn: num(c["packets-in"]),
            packetsOut: num(c["packets-out"]),
            installTime: num(c["install-time"]),
            rekeyTime: num(c["rekey-time"]),
            localTs: list(c["local-ts"]),
            remoteTs: list(c["remote-ts"]),
          });
        }
      sas.push({
        name,
        uniqueId: num(v.uniqueid),
        state: str(v.state),
        localHost: str(v["local-host"]),
        remoteHost: str(v["remote-host"]),
        established: num(v.established),
        encap: str(v["nat-any"]) === "yes" || str(v["nat-fake"]) === "yes" || str(v.encap) === "yes",
        children,
      });
    }
  return sas;
}

/** The IKE_SAs and their CHILD_SAs, as charon reports them over VICI. */
export async function listSas(p: CharonPaths): Promise<IkeSa[]> {
  return parseSas(await swanctl(p, ["--list-sas", "--raw"]));
}

/**
 * Ends the charon serving these paths (SIGTERM, then SIGKILL after graceMs) if it is the one its
 * PID file names; returns its PID or null. Never signals a process that is not that charon.
 */
export async function stopCharon(p: CharonPaths, graceMs = 3000): Promise<number | null> {
  const pid = await findCharon(p);
  if (pid === null) return null;
  await endProcess(pid, graceMs);
  return pid;
}

/** Removes the instance's files (after stopCharon). */
export async function removeCharonFiles(p: CharonPaths): Promise<void> {
  await rm(p.dir, { recursive: true, force: true });
}

/** The TUN device kernel-libipsec makes in the namespace. */
export const LIBIPSEC_TUN = checkIfname("ipsec0");
