// The VXLAN path to one peer: FDB (peer VTEP MAC -> peer underlay address), a permanent
// neighbour entry per pod family (peer VTEP address -> MAC) and an onlink route per pod subnet
// via the peer's VTEP address (the first address of its pod subnet, as flannel does).
import { formatCidr, type Cidr } from "../../net/cidr.js";
import { formatIp, type IpFamily as Family } from "../../net/ip.js";
import type { PeerView } from "../common/nodes.js";
import type { PeerPlan } from "../common/plan.js";
import { VxlanData } from "./config.js";

/** A node's VTEP address: the first address of its pod subnet (x.x.x.0, prefix::), flannel's convention. */
export function vtepAddress(podSubnet: Cidr): string {
  return formatIp(podSubnet.family, podSubnet.base);
}

export interface VxlanSide {
  readonly device: string;
  readonly vni: number;
  readonly underlayFamily: Family;
  readonly localMac: string;
}

/** Adds the VXLAN path for the given pod families of `peer` to `plan` (errors go to plan.errors). */
export function addVxlanPath(plan: PeerPlan, peer: PeerView, side: VxlanSide, families: readonly Family[]): void {
  if (families.length === 0) return;
  const parsed = VxlanData.safeParse(peer.data);
  if (!parsed.success) {
    plan.errors.push(
      `peer ${peer.name}: no valid VXLAN data in its lease (${parsed.error.issues.map((i) => i.message).join("; ")}); is it running the vxlan backend?`,
    );
    return;
  }
  const d = parsed.data;
  const mac = d.vtepMAC.toLowerCase();
  if (d.vni !== side.vni) {
    plan.errors.push(`peer ${peer.name}: VXLAN VNI ${d.vni} differs from this node's ${side.vni}`);
    return;
  }
  if (d.underlayFamily !== side.underlayFamily) {
    plan.errors.push(
      `peer ${peer.name}: its VXLAN runs over IPv${d.underlayFamily}, this node's over IPv${side.underlayFamily}; use one underlay family cluster-wide`,
    );
    return;
  }
  if (mac === side.localMac) {
    plan.errors.push(`peer ${peer.name}: VTEP MAC ${mac} is this node's own`);
    return;
  }
  const dst = peer.underlay.get(side.underlayFamily);
  if (dst === undefined) {
    plan.errors.push(
      `peer ${peer.name}: no IPv${side.underlayFamily} underlay address, and this cluster's VXLAN runs over IPv${side.underlayFamily}`,
    );
    return;
  }
  plan.fdb.push({ mac, dst });
  for (const f of families) {
    const net = peer.pods.get(f);
    if (!net) continue;
    const vtepIp = vtepAddress(net);
    plan.neighs.push({ ip: vtepIp, mac });
    plan.routes.push({ dst: formatCidr(net), via: vtepIp, dev: side.device, onlink: true });
    plan.paths[formatCidr(net)] = "vxlan";
  }
}
