// The lab's machines: an underlay namespace holding a Linux bridge (the lab's "switch") and one
// namespace per node, each wired to the bridge by a veth and given an underlay address. Nothing
// here touches the machine's own namespace: every link is created inside a lab namespace, and a
// lab name that turns out to be bound to the host's namespace is refused (kernel/netns.ts).
import { enableForwarding, ensureBridge, plugIntoBridge } from "../kernel/bridge.js";
import { ensureNetns } from "../kernel/netns.js";
import { ifname, ip } from "../kernel/validate.js";

export { deleteNetns, ensureNetns, listNetns, netnsExists } from "../kernel/netns.js";
export { isHostNetns } from "../kernel/nsfile.js";

/** The bridge inside the underlay namespace. */
export const UNDERLAY_BRIDGE = "br0";
/** A node's underlay interface, inside the node namespace. */
export const NODE_UPLINK = "eth0";

/**
 * The underlay "switch" plus a gateway address on it, so every node has a default route as real
 * hosts do (agents may find their underlay interface through it). The underlay namespace does
 * not forward: nothing leaves the lab.
 */
export async function ensureUnderlay(ul: string, gateways: readonly string[] = []): Promise<void> {
  await ensureNetns(ul);
  await ensureBridge(ul, UNDERLAY_BRIDGE, gateways);
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
  for (const a of [w.ipv4, w.ipv6, w.gateway4, w.gateway6]) if (a !== undefined) ip(a);
  ifname(w.node);
  await ensureNetns(w.netns);
  await plugIntoBridge({
    bridgeNs: w.ul,
    bridge: UNDERLAY_BRIDGE,
    port: w.node,
    hostNs: w.netns,
    uplink: NODE_UPLINK,
    addresses: w.ipv6 !== undefined ? [w.ipv4, w.ipv6] : [w.ipv4],
    gateways: [...(w.gateway4 ? [w.gateway4] : []), ...(w.gateway6 && w.ipv6 ? [w.gateway6] : [])],
  });
  await enableForwarding(w.netns);
}
