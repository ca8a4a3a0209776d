// host-gw: every peer's pod subnet is routed via the peer's underlay address. No encapsulation,
// so every node must sit on one L2 segment; a peer behind a router is refused, with a message.
import { addDirectRoute, directBlocker } from "../common/direct.js";
import type { IpFamily as Family } from "../../net/ip.js";
import { localView, peerViews, type NodeView, type PeerView } from "../common/nodes.js";
import { emptyPlan, type PeerPlan } from "../common/plan.js";
import { reconcile } from "../common/reconcile.js";
import { deleteBackendRoutes } from "../common/teardown.js";
import { SerialBackend } from "../common/serial.js";
import { discoverAll, type Underlay } from "../common/underlay.js";
import { type LocalNode, type PeerNode, type SetupResult, type SyncOptions, type SyncReport } from "../types.js";

export class HostGwBackend extends SerialBackend {
  readonly name = "host-gw" as const;
  private local: NodeView | null = null;
  private underlays = new Map<Family, Underlay>();

  overhead(): number {
    return 0;
  }

  protected async doSetup(local: LocalNode): Promise<SetupResult> {
    const node = localView(local);
    this.underlays = await discoverAll(this.ctx, node);
    this.local = node;
    const podMtu = this.opts.mtu ?? Math.min(...[...this.underlays.values()].map((u) => u.mtu));
    return { data: {}, podMtu, changes: [] };
  }

  private plan(peer: PeerView): PeerPlan {
    const plan = emptyPlan(peer.name);
    for (const f of peer.pods.keys()) {
      const why = directBlocker(peer, f, this.underlays);
      if (why === null) addDirectRoute(plan, peer, f, this.underlays.get(f) as Underlay);
      else
        plan.errors.push(
          `peer ${peer.name}: IPv${f} pods not routed: ${why}; host-gw needs all nodes on one L2 segment (use the vxlan-direct or vxlan backend)`,
        );
    }
    return plan;
  }

  protected async doSync(peers: readonly PeerNode[], options: SyncOptions): Promise<SyncReport> {
    if (!this.local) throw new Error("host-gw: syncPeers() called before setup()");
    const reserved = [...this.underlays.values()].flatMap((u) => u.connected);
    const { valid, rejected } = peerViews(this.local, peers, reserved);
    return reconcile({
      ctx: this.ctx,
      routeProtocol: this.proto,
      vtep: null,
      plans: valid.map((p) => this.plan(p)),
      rejected,
      memo: this.memo,
      trustMemo: options.incremental === true,
    });
  }

  protected async doTeardown(): Promise<void> {
    await deleteBackendRoutes(this.ctx, this.proto);
    this.local = null;
  }
}
