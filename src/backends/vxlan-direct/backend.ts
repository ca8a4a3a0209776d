// vxlan-direct (flannel DirectRouting, Calico CrossSubnet): peers on this node's underlay subnet
// are routed directly via their underlay address, the rest over the VXLAN tunnel. Decided per
// pod family, so a peer can be direct for IPv4 and tunnelled for IPv6.
import { addDirectRoute, directBlocker } from "../common/direct.js";
import type { IpFamily as Family } from "../../net/ip.js";
import type { NodeView, PeerView } from "../common/nodes.js";
import { emptyPlan, type PeerPlan } from "../common/plan.js";
import { discoverAll, type Underlay } from "../common/underlay.js";
import type { BackendName } from "../types.js";
import { VxlanBackend } from "../vxlan/backend.js";
import { addVxlanPath, type VxlanSide } from "../vxlan/plan.js";

export class VxlanDirectBackend extends VxlanBackend {
  override readonly name: BackendName = "vxlan-direct";
  private underlays = new Map<Family, Underlay>();

  protected override async afterSetup(node: NodeView): Promise<void> {
    this.underlays = await discoverAll(this.ctx, node);
    this.reserved = [...this.underlays.values()].flatMap((u) => u.connected);
  }

  protected override plan(peer: PeerView, side: VxlanSide): PeerPlan {
    const plan = emptyPlan(peer.name);
    const tunnelled: Family[] = [];
    for (const f of peer.pods.keys()) {
      if (directBlocker(peer, f, this.underlays) === null)
        addDirectRoute(plan, peer, f, this.underlays.get(f) as Underlay);
      else tunnelled.push(f);
    }
    addVxlanPath(plan, peer, side, tunnelled);
    return plan;
  }
}
