// Network namespace files and their identity. A bind-mounted or /proc namespace file lives on
// nsfs, the one filesystem all namespace files share, so its device tells whether a path is a
// namespace at all, and (device, inode) tells which namespace it is, whatever path names it.
// The one place weft decides "is this the machine's own namespace?": the agent's start, the
// CNI ADD, the lab and every cleanup ask here.
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { normalize } from "node:path";

/** "host": the machine's own namespace or the caller's own one (any path to either). */
export type NsFileState = "ok" | "missing" | "not-a-namespace" | "host";

/** A network namespace's identity: the (device, inode) of any file that names it. */
export interface NetnsId {
  dev: number;
  ino: number;
}

/** The machine's own network namespace is the one PID 1 lives in. */
export const HOST_NETNS_PATH = "/proc/1/ns/net";
export const OWN_NETNS_PATH = "/proc/self/ns/net";

export class HostNetnsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HostNetnsError";
  }
}

export function netnsFileState(path: string): NsFileState {
  // PID 1's namespace by name, even where PID 1 cannot be inspected.
  if (normalize(path) === HOST_NETNS_PATH) return "host";
  let st;
  try {
    st = statSync(path);
  } catch {
    return "missing";
  }
  const own = ownNetnsId();
  if (st.dev !== own.dev) return "not-a-namespace";
  const id = { dev: st.dev, ino: st.ino };
  if (sameNetns(id, own)) return "host";
  const host = hostNetnsId();
  return !host || sameNetns(id, host) ? "host" : "ok";
}

/** The identity of the namespace a path names (throws when the path cannot be read). */
export function netnsIdOf(path: string): NetnsId {
  const st = statSync(path);
  return { dev: st.dev, ino: st.ino };
}

export function sameNetns(a: NetnsId, b: NetnsId): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

// Neither namespace changes during a process's life (Node never calls setns), so each is read
// once: the CNI ADD asks on every call.
let ownId: NetnsId | undefined;
let hostId: NetnsId | null | undefined;

function ownNetnsId(): NetnsId {
  return (ownId ??= netnsIdOf(OWN_NETNS_PATH));
}

/**
 * The machine's own namespace: PID 1's. Where PID 1 cannot be inspected (an init that is not
 * dumpable, as in some micro-VMs, refuses even root), kthreadd's (PID 2): kernel threads live in
 * the initial namespaces always. Null when neither can be read.
 */
function hostNetnsId(): NetnsId | null {
  if (hostId !== undefined) return hostId;
  try {
    return (hostId = netnsIdOf(HOST_NETNS_PATH));
  } catch {
    /* try kthreadd */
  }
  try {
    if (readFileSync("/proc/2/comm", "utf8").trim() === "kthreadd") return (hostId = netnsIdOf("/proc/2/ns/net"));
  } catch {
    /* no /proc or no permission */
  }
  return (hostId = null);
}

/**
 * Whether a path names the machine's own network namespace. Fails safe: when the host's
 * namespace cannot be read at all the answer is "yes", so callers refuse rather than risk it.
 */
export function isHostNetns(path: string): boolean {
  const host = hostNetnsId();
  if (!host) return true;
  let id: NetnsId;
  try {
    id = netnsIdOf(path);
  } catch {
    return false;
  } // no such namespace: nothing to protect
  return sameNetns(id, host);
}

/** Whether this process itself runs in the machine's own network namespace. */
export function inHostNetns(): boolean {
  return isHostNetns(OWN_NETNS_PATH);
}

/** Throws HostNetnsError before `what` is done to the machine's own namespace. */
export function assertNotHostNetns(path: string, what: string): void {
  if (isHostNetns(path))
    throw new HostNetnsError(`refusing to ${what}: ${path} is the machine's own network namespace (that of PID 1)`);
}

/**
 * Where the net sysctls are. In an unprivileged container /proc/sys is read-only and runc refuses
 * any mount inside /proc, so deploy/weft.yaml mounts the host's /proc/sys/net elsewhere and names it
 * in WEFT_PROC_SYS_NET. The files still show the namespace of the process that opens them.
 */
const SYSCTL_NET_DIR = process.env.WEFT_PROC_SYS_NET || "/proc/sys/net";

/** The file of net sysctl `rel` ("ipv4/conf/IF/proxy_arp"); `rel` comes from validated names. */
export const sysctlNetPath = (rel: string): string => `${SYSCTL_NET_DIR}/${rel}`;

/**
 * Sets a sysctl under /proc/sys/net (of the caller's namespace) only when it differs, so an agent
 * on a node that already forwards changes nothing. Returns whether it wrote.
 */
export function ensureSysctl(path: string, value: string): boolean {
  if (!path.startsWith("/proc/sys/net/")) throw new Error(`ensureSysctl: ${path} is not a /proc/sys/net path`);
  path = SYSCTL_NET_DIR + path.slice("/proc/sys/net".length);
  let now: string | undefined;
  try {
    now = readFileSync(path, "utf8").trim();
  } catch {
    now = undefined;
  }
  if (now === value) return false;
  writeFileSync(path, value);
  return true;
}
