// The lab's machines: an underlay namespace holding a Linux bridge (the lab's "switch") and one
// namespace per node, each wired to the bridge by a veth and given an underlay address. Nothing
// here touches the machine's own namespace: every link is created inside a lab namespace.
import { existsSync } from "node:fs";
import { run } from "../kernel/exec.js";
import { ifname, ip as vIp, netnsName } from "../kernel/validate.js";
import { netnsPathOf } from "./names.js";

/** The bridge inside the underlay namespace. */
export const UNDERLAY_BRIDGE = "br0";
/** A node's underlay interface, inside the node namespace. */
export const NODE_UPLINK = "eth0";

export function netnsExists(name: string): boolean {
  return existsSync(netnsPathOf(name));
}

/** `ip netns add` plus loopback up; a namespace that already exists is kept as it is. */
export async function ensureNetns(name: string): Promise<boolean> {
  netnsName(name);
  if (netnsExists(name)) return false;
  await run(["ip", "netns", "add", name]);
  await run(["ip", "link", "set", "lo", "up"], { netns: netnsPathOf(name) });
  return true;
}

export async function deleteNetns(name: string): Promise<void> {
  netnsName(name);
  if (!netnsExists(name)) return;
  await run(["ip", "netns", "del", name]);
}

export async function listNetns(): Promise<string[]> {
  const out = (await run(["ip", "-j", "netns", "list"])).trim();
  if (!out) return [];
  return (JSON.parse(out) as Array<{ name: string }>).map((n) => n.name);
}

async function linkExists(netns: string, dev: string): Promise<boolean> {
  const out = await run(["ip", "-j", "link", "show"], { netns: netnsPathOf(netns) });
  return (JSON.parse(out.trim() || "[]") as Array<{ ifname: string }>).some((l) => l.ifname === dev);
}

/**
 * The underlay "switch" plus a gateway address on it, so every node has a default route as real
 * hosts do (agents may find their underlay interface through it). The underlay namespace does
 * not forward: nothing leaves the lab.
 */
export async function ensureUnderlay(ul: string, gateways: readonly string[] = []): Promise<void> {
  await ensureNetns(ul);
  const batch: string[] = [];
  if (!(await linkExists(ul, UNDERLAY_BRIDGE))) batch.push(`link add ${UNDERLAY_BRIDGE} type bridge`);
  for (const g of gateways) batch.push(`addr replace ${vIp(g)}/${g.includes(":") ? 64 : 24} dev ${UNDERLAY_BRIDGE}${g.includes(":") ? " nodad" : ""}`);
  batch.push(`link set ${UNDERLAY_BRIDGE} up`);
  await run(["ip", "-batch", "-"], { netns: netnsPathOf(ul), input: batch.join("\n") + "\n" });
}

export interface NodeWiring {
  ul: string;
  node: string;
  netns: string;
  ipv4: string;
  ipv6?: string;
  /** The underlay gateway (the bridge's address): the node's default route. */
  gateway4?: string;
  gateway6?: string;
}

/** Makes (or completes) a node namespace wired to the underlay bridge. */
export async function ensureNode(w: NodeWiring): Promise<void> {
  const port = ifname(w.node);
  vIp(w.ipv4);
  if (w.ipv6 !== undefined) vIp(w.ipv6);
  await ensureNetns(w.netns);
  const nodeNs = netnsPathOf(w.netns);
  if (!(await linkExists(w.ul, port))) {
    // Made in the underlay namespace with its peer straight in the node namespace.
    await run(["ip", "link", "add", port, "type", "veth", "peer", "name", NODE_UPLINK, "netns", netnsName(w.netns)], {
      netns: netnsPathOf(w.ul),
    });
  }
  await run(["ip", "link", "set", port, "master", UNDERLAY_BRIDGE, "up"], { netns: netnsPathOf(w.ul) });
  const addrs = await run(["ip", "-j", "addr", "show", "dev", NODE_UPLINK], { netns: nodeNs });
  const have = new Set(
    (JSON.parse(addrs.trim() || "[]") as Array<{ addr_info?: Array<{ local: string }> }>).flatMap((l) => (l.addr_info ?? []).map((a) => a.local)),
  );
  const batch: string[] = [];
  if (!have.has(w.ipv4)) batch.push(`addr add ${w.ipv4}/24 dev ${NODE_UPLINK}`);
  if (w.ipv6 !== undefined && !have.has(w.ipv6)) batch.push(`addr add ${w.ipv6}/64 dev ${NODE_UPLINK} nodad`);
  batch.push(`link set ${NODE_UPLINK} up`);
  if (w.gateway4) batch.push(`route replace default via ${vIp(w.gateway4)} dev ${NODE_UPLINK}`);
  if (w.gateway6 && w.ipv6) batch.push(`route replace default via ${vIp(w.gateway6)} dev ${NODE_UPLINK}`);
  await run(["ip", "-batch", "-"], { netns: nodeNs, input: batch.join("\n") + "\n" });
  // What any Kubernetes node has (kubeadm's preflight demands it): the node forwards packets.
  await run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], { netns: nodeNs });
}
