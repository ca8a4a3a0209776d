// A Linux bridge as a virtual switch between namespaces, and hosts plugged into it by a veth
// (the lab's underlay). Idempotent: each function completes what is missing and keeps the rest.
// Everything runs inside the namespaces named by the caller, never in the machine's own.
import { run } from "./exec.js";
import { netnsPathOf } from "./netns.js";
import { ifname, ip as vIp, netnsName } from "./validate.js";

async function linkExists(netnsPath: string, dev: string): Promise<boolean> {
  const out = await run(["ip", "-j", "link", "show"], { netns: netnsPath });
  return (JSON.parse(out.trim() || "[]") as Array<{ ifname: string }>).some((l) => l.ifname === dev);
}

const prefixOf = (addr: string) => (addr.includes(":") ? 64 : 24);

/** A bridge named `bridge` in namespace `ns`, up, holding `addresses` (/24 or /64 each). */
export async function ensureBridge(ns: string, bridge: string, addresses: readonly string[] = []): Promise<void> {
  const path = netnsPathOf(ns);
  const batch: string[] = [];
  if (!(await linkExists(path, ifname(bridge)))) batch.push(`link add ${bridge} type bridge`);
  for (const a of addresses)
    batch.push(`addr replace ${vIp(a)}/${prefixOf(a)} dev ${bridge}${a.includes(":") ? " nodad" : ""}`);
  batch.push(`link set ${bridge} up`);
  await run(["ip", "-batch", "-"], { netns: path, input: batch.join("\n") + "\n" });
}

export interface BridgedHost {
  /** The namespace holding the bridge. */
  bridgeNs: string;
  bridge: string;
  /** The bridge port's name (in bridgeNs). */
  port: string;
  /** The host's namespace and its interface on the bridge. */
  hostNs: string;
  uplink: string;
  /** The host's addresses on the uplink (/24 or /64). */
  addresses: readonly string[];
  /** Default routes via these gateways (one per family), as a real host has. */
  gateways?: readonly string[];
}

/** Plugs a host namespace into the bridge with a veth, addresses and default routes. */
export async function plugIntoBridge(h: BridgedHost): Promise<void> {
  const bridgeNs = netnsPathOf(h.bridgeNs);
  const hostNs = netnsPathOf(h.hostNs);
  // Everything checked before the first change, so bad input leaves nothing half-made.
  ifname(h.port);
  ifname(h.uplink);
  ifname(h.bridge);
  for (const a of [...h.addresses, ...(h.gateways ?? [])]) vIp(a);
  if (!(await linkExists(bridgeNs, h.port))) {
    // Made beside the bridge with its peer straight in the host namespace.
    await run(["ip", "link", "add", h.port, "type", "veth", "peer", "name", h.uplink, "netns", netnsName(h.hostNs)], {
      netns: bridgeNs,
    });
  }
  await run(["ip", "link", "set", h.port, "master", h.bridge, "up"], { netns: bridgeNs });
  const out = await run(["ip", "-j", "addr", "show", "dev", h.uplink], { netns: hostNs });
  const have = new Set(
    (JSON.parse(out.trim() || "[]") as Array<{ addr_info?: Array<{ local: string }> }>).flatMap((l) =>
      (l.addr_info ?? []).map((a) => a.local),
    ),
  );
  const batch: string[] = [];
  for (const a of h.addresses) {
    if (!have.has(vIp(a))) batch.push(`addr add ${a}/${prefixOf(a)} dev ${h.uplink}${a.includes(":") ? " nodad" : ""}`);
  }
  batch.push(`link set ${h.uplink} up`);
  for (const g of h.gateways ?? []) batch.push(`route replace default via ${vIp(g)} dev ${h.uplink}`);
  await run(["ip", "-batch", "-"], { netns: hostNs, input: batch.join("\n") + "\n" });
}

/** What any Kubernetes node has (kubeadm's preflight demands it): the namespace forwards packets. */
export async function enableForwarding(ns: string): Promise<void> {
  await run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], {
    netns: netnsPathOf(ns),
  });
}
