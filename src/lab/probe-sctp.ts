// SCTP for the lab's pods. node has no SCTP sockets, so socat does the socket work: it listens
// (echoing, as the UDP server does) and connects for probes, started with argument arrays in the
// namespace of the process that calls these functions (the pod server runs in its pod's).
// Whether the kernel has SCTP is probed by opening an SCTP socket, never assumed from a path.
import { spawn, type ChildProcess } from "node:child_process";
import { ipFamily } from "../net/ip.js";
import type { ProbeResult } from "./probe-protocol.js";

export type SctpSupport = { ok: true } | { ok: false; reason: string };

// What socket(2) says when the kernel has no SCTP (no module, or built without it).
const NO_KERNEL_SCTP = /Protocol not supported|Socket type not supported|Address family not supported/;
// socat built without SCTP does not know the address type.
const NO_SOCAT_SCTP = /unknown device\/address|SCTP.*(not|un)supported|address type/i;

interface Done {
  code: number | null;
  stderr: string;
  timedOut: boolean;
}

/** Runs socat with `args`, killing it after timeoutMs. Never throws: a missing socat is code 127. */
function socat(args: readonly string[], timeoutMs: number, netns?: string): Promise<Done> {
  const argv = netns ? ["nsenter", `--net=${netns}`, "--", "socat", ...args] : ["socat", ...args];
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stderr: `socat: ${e.message} (Debian package socat)`, timedOut: false });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, timedOut });
    });
  });
}

/** socat's error line ("... socat[12] E socket(2, 1, 132): Protocol not supported"), without its prefix. */
function errorLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  const e = lines.filter((l) => /\] E /.test(l)).pop() ?? lines.pop() ?? "";
  return e.replace(/^.*\] E /, "");
}

function unsupported(d: Done): SctpSupport | undefined {
  if (d.code === 127) return { ok: false, reason: `SCTP needs socat, which cannot run: ${d.stderr.trim()}` };
  if (NO_KERNEL_SCTP.test(d.stderr))
    return { ok: false, reason: `this kernel has no SCTP: opening an SCTP socket failed (${errorLine(d.stderr)})` };
  if (NO_SOCAT_SCTP.test(d.stderr))
    return { ok: false, reason: `this socat has no SCTP support (${errorLine(d.stderr)})` };
  return undefined;
}

/**
 * Opens an SCTP socket (an association attempt to the discard port on loopback, which a kernel
 * with SCTP answers at once with an ABORT) and reports whether the kernel refused the socket.
 * `netns` (a path) runs the attempt there, so nothing reaches the machine's own namespace.
 */
export async function sctpSupport(netns?: string): Promise<SctpSupport> {
  const d = await socat(["-u", "/dev/null", "SCTP4-CONNECT:127.0.0.1:9,connect-timeout=1"], 5000, netns);
  return unsupported(d) ?? { ok: true };
}

const REFUSED =
  /Connection refused|No route to host|Network is unreachable|Permission denied|Operation not permitted|Connection reset/;

/** An SCTP association to host:port: "connected" once established, as a TCP probe's connect. */
export async function probeSctp(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<{ result: ProbeResult; detail?: string } | { error: string }> {
  const target = ipFamily(host) === 6 ? `SCTP6-CONNECT:[${host}]:${port}` : `SCTP4-CONNECT:${host}:${port}`;
  const d = await socat(
    ["-u", "/dev/null", `${target},connect-timeout=${(timeoutMs / 1000).toFixed(3)}`],
    timeoutMs + 2000,
  );
  const no = unsupported(d);
  if (no && !no.ok) return { error: `SCTP: ${no.reason}` };
  if (d.code === 0) return { result: "connected" };
  const line = errorLine(d.stderr);
  if (!d.timedOut && REFUSED.test(line)) return { result: "refused", detail: line };
  return { result: "timeout", ...(line ? { detail: line } : {}) };
}

export interface SctpServer {
  close(): void;
}

/**
 * Serves SCTP on every address of the namespace (IPv6 socket that takes IPv4 too), echoing what
 * arrives. Resolves once socat listens; rejects with the reason when it cannot (no kernel SCTP).
 */
export function serveSctp(port: number, log: (msg: string) => void): Promise<SctpServer> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn("socat", ["-d", "-d", `SCTP6-LISTEN:${port},ipv6only=0,reuseaddr,fork`, "PIPE"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    let listening = false;
    child.on("error", (e) =>
      reject(new Error(`SCTP port ${port}: socat cannot run: ${e.message} (Debian package socat)`)),
    );
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      if (listening) return;
      stderr += d;
      if (/ listening on /.test(stderr)) {
        listening = true;
        resolve({ close: () => child.kill("SIGTERM") });
      }
    });
    child.on("close", (code) => {
      if (!listening) {
        const no = unsupported({ code, stderr, timedOut: false });
        reject(
          new Error(`SCTP port ${port}: ${no && !no.ok ? no.reason : `socat exited ${code}: ${errorLine(stderr)}`}`),
        );
      } else log(`SCTP port ${port}: socat exited ${code}`);
    });
  });
}
