// host-gw: every peer's pod subnet is routed via the peer's underlay address. No encapsulation,
// so every node must sit on one L2 segment; a peer behind a router is refused, with a message.
import type { KernelContext } from "../../kernel/tracked.js";
import { addDirectRoute, directBlocker } from "../common/direct.js";
import type { Family } from "../common/ipnet.js";
import { localView, peerViews, type NodeView, type PeerView } from "../common/nodes.js";
import { emptyPlan, type PeerPlan } from "../common/plan.js";
import { reconcile, type KernelMemo } from "../common/reconcile.js";
import { deleteBackendRoutes } from "../common/teardown.js";
import { Serial } from "../common/serial.js";
import { discoverAll, type Underlay } from "../common/underlay.js";
import {
  DEFAULT_ROUTE_PROTOCOL, type Backend, type BackendOptions, type LocalNode, type PeerNode, type SetupResult, type SyncOptions, type SyncReport,
} from "../types.js";

export class HostGwBackend implements Backend {
  readonly name = "host-gw" as const;
  private readonly ctx: KernelContext;
  private readonly proto: number;
  private local: NodeView | null = null;
  private underlays = new Map<Family, Underlay>();

  private readonly serial = new Serial();
  /** What the last complete sync wrote (see reconcile.ts); setup and teardown forget it. */
  private readonly memo: KernelMemo = {};

  constructor(private readonly opts: BackendOptions = {}) {
    this.ctx = opts.kernel ?? {};
    this.proto = opts.routeProtocol ?? DEFAULT_ROUTE_PROTOCOL;
  }

  overhead(): number {
    return 0;
  }

  setup(local: LocalNode): Promise<SetupResult> {
    return this.serial.run(() => this.doSetup(local));
  }

  syncPeers(peers: readonly PeerNode[], options: SyncOptions = {}): Promise<SyncReport> {
    return this.serial.run(() => this.doSync(peers, options));
  }

  teardown(): Promise<void> {
    return this.serial.run(() => this.doTeardown());
  }

  private async doSetup(local: LocalNode): Promise<SetupResult> {
    this.memo.view = undefined;
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
      else plan.errors.push(`peer ${peer.name}: IPv${f} pods not routed: ${why}; host-gw needs all nodes on one L2 segment (use the vxlan-direct or vxlan backend)`);
    }
    return plan;
  }

  private async doSync(peers: readonly PeerNode[], options: SyncOptions): Promise<SyncReport> {
    if (!this.local) throw new Error("host-gw: syncPeers() called before setup()");
    const reserved = [...this.underlays.values()].flatMap((u) => u.connected);
    const { valid, rejected } = peerViews(this.local, peers, reserved);
    return reconcile({
      ctx: this.ctx, routeProtocol: this.proto, vtep: null, plans: valid.map((p) => this.plan(p)), rejected,
      memo: this.memo, trustMemo: options.incremental === true,
    });
  }

  private async doTeardown(): Promise<void> {
    this.memo.view = undefined;
    await deleteBackendRoutes(this.ctx, this.proto);
    this.local = null;
  }
}
