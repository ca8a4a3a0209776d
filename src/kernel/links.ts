// Read-only views of a namespace's links for the policy agent: which host veths lead into the
// same pod namespace, and a live feed of link changes. Runs in the given namespace (the caller's
// own when absent).
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable } from "node:stream";
import { run } from "./exec.js";
import { netnsPath } from "./validate.js";

export interface LinkTarget {
  /** Network namespace path (e.g. /run/netns/node1); absent = this process' namespace. */
  netns?: string;
}

function target(t: LinkTarget): { netns?: string } {
  return t.netns === undefined ? {} : { netns: netnsPath(t.netns) };
}

/**
 * Host veths whose other end is in another network namespace, with that namespace's id as this
 * namespace knows it (`ip -j link show type veth`, link_netnsid): veths with the same id lead
 * into one namespace (e.g. one pod's eth0 and eth1). Used to find a pod's sibling interfaces.
 */
export async function listVethPeerNetns(t: LinkTarget = {}): Promise<Array<{ ifname: string; netnsid: number }>> {
  const out = await run(["ip", "-j", "link", "show", "type", "veth"], target(t));
  const links = JSON.parse(out.trim() === "" ? "[]" : out) as Array<{ ifname?: unknown; link_netnsid?: unknown }>;
  return links.flatMap((l) =>
    typeof l.ifname === "string" && typeof l.link_netnsid === "number" && l.link_netnsid >= 0
      ? [{ ifname: l.ifname, netnsid: l.link_netnsid }]
      : [],
  );
}

export type LinkMonitor = ChildProcessByStdio<null, Readable, Readable>;

/**
 * `ip -o monitor link` in the namespace: one stdout line per link change. The caller owns the
 * process (end it by its PID); like the NFLOG capture it dies with the calling thread.
 */
export function spawnLinkMonitor(t: LinkTarget = {}): LinkMonitor {
  const { netns } = target(t);
  const full = [
    "setpriv",
    "--pdeathsig",
    "KILL",
    "--",
    ...(netns ? ["nsenter", `--net=${netns}`, "--"] : []),
    "ip",
    "-o",
    "monitor",
    "link",
  ];
  return spawn(full[0], full.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
}
