// The host-gw path: a peer's pod subnet routed via the peer's underlay address, allowed only
// when that address is on a subnet connected to this node's underlay interface.
import { formatCidr } from "../../net/cidr.js";
import type { IpFamily as Family } from "../../net/ip.js";
import type { PeerView } from "./nodes.js";
import type { PeerPlan } from "./plan.js";
import { describeConnected, isDirect, type Underlay } from "./underlay.js";

/** Why the family's pod subnet of `peer` cannot be routed directly, or null when it can. */
export function directBlocker(peer: PeerView, f: Family, underlays: ReadonlyMap<Family, Underlay>): string | null {
  const u = underlays.get(f);
  if (!u) return `this node has no IPv${f} underlay address`;
  const pa = peer.underlay.get(f);
  if (pa === undefined) return `it has no IPv${f} underlay address`;
  if (!isDirect(u, pa)) return `its underlay address ${pa} is not on this node's subnet (${describeConnected(u)})`;
  return null;
}

export function addDirectRoute(plan: PeerPlan, peer: PeerView, f: Family, u: Underlay): void {
  const net = peer.pods.get(f);
  const via = peer.underlay.get(f);
  if (!net || via === undefined) return;
  plan.routes.push({ dst: formatCidr(net), via, dev: u.dev, onlink: false });
  plan.paths[formatCidr(net)] = "direct";
}
