// vxlan: one VTEP per node (weft.<vni>, static FDB, no learning, no multicast) carrying both pod
// families; each peer gets an FDB entry, permanent neighbour entries and onlink routes.
import { deleteLink, getLink, linkOffloads, removeVxlanNotrack } from "../../kernel/vxlan.js";
import type { Cidr } from "../../net/cidr.js";
import type { IpFamily as Family } from "../../net/ip.js";
import { localView, peerViews, type NodeView, type PeerView } from "../common/nodes.js";
import { emptyPlan, type PeerPlan } from "../common/plan.js";
import { reconcile } from "../common/reconcile.js";
import { deleteBackendRoutes } from "../common/teardown.js";
import { SerialBackend } from "../common/serial.js";
import { discoverUnderlay } from "../common/underlay.js";
import {
  BackendSetupError,
  type BackendName,
  type BackendOptions,
  type LocalNode,
  type PeerNode,
  type SetupResult,
  type SyncOptions,
  type SyncReport,
} from "../types.js";
import { vtepMac, vxlanConfig, vxlanData, vxlanOverhead, type VxlanConfig } from "./config.js";
import { addVxlanPath, vtepAddress, type VxlanSide } from "./plan.js";
import { ensureVtep } from "./vtep.js";

export class VxlanBackend extends SerialBackend {
  readonly name: BackendName = "vxlan";
  protected readonly cfg: VxlanConfig;
  protected local: NodeView | null = null;
  protected side: VxlanSide | null = null;
  /** Underlay subnets no peer's pod subnet may overlap. */
  protected reserved: Cidr[] = [];

  constructor(opts: BackendOptions = {}) {
    super(opts);
    this.cfg = vxlanConfig(opts.vxlan);
  }

  overhead(underlayFamily: Family): number {
    return vxlanOverhead(underlayFamily);
  }

  /** Hook for subclasses that need more of the node's state at setup (vxlan-direct). */
  protected async afterSetup(_node: NodeView): Promise<void> {}

  protected async doSetup(local: LocalNode): Promise<SetupResult> {
    const node = localView(local);
    const family: Family = this.cfg.underlayFamily ?? (node.underlay.has(4) ? 4 : 6);
    const u = await discoverUnderlay(this.ctx, node, family);
    const mtu = this.opts.mtu ?? u.mtu - vxlanOverhead(family);
    if (mtu < 1280 && node.pods.has(6)) {
      throw new BackendSetupError(
        `node ${node.name}: pod MTU ${mtu} is below IPv6's minimum 1280 (underlay ${u.dev} MTU ${u.mtu})`,
      );
    }
    const mac = vtepMac(node.name, this.cfg.vni);
    const addresses = [...node.pods.values()].map((n) => `${vtepAddress(n)}/${n.family === 4 ? 32 : 128}`);
    const changes = await ensureVtep(this.ctx, {
      name: this.cfg.device,
      vni: this.cfg.vni,
      port: this.cfg.port,
      local: u.address,
      dev: u.dev,
      mac,
      mtu,
      addresses,
      disableTxChecksumOffload: this.cfg.disableTxChecksumOffload,
    });
    // Every underlay subnet of the node is off limits for pod subnets, not only the tunnel's.
    this.reserved = [...u.connected];
    for (const f of node.underlay.keys()) {
      if (f !== family)
        this.reserved.push(
          ...(await discoverUnderlay(this.ctx, node, f).then(
            (x) => x.connected,
            () => [],
          )),
        );
    }
    await this.afterSetup(node);
    this.local = node;
    this.side = { device: this.cfg.device, vni: this.cfg.vni, underlayFamily: family, localMac: mac };
    const device = { name: this.cfg.device, offloads: await linkOffloads(this.ctx, this.cfg.device) };
    return { data: vxlanData(mac, this.cfg.vni, family), podMtu: mtu, changes, device };
  }

  protected plan(peer: PeerView, side: VxlanSide): PeerPlan {
    const plan = emptyPlan(peer.name);
    addVxlanPath(plan, peer, side, [...peer.pods.keys()]);
    return plan;
  }

  protected async doSync(peers: readonly PeerNode[], options: SyncOptions): Promise<SyncReport> {
    const side = this.side;
    if (!this.local || !side) throw new Error(`${this.name}: syncPeers() called before setup()`);
    const { valid, rejected } = peerViews(this.local, peers, this.reserved);
    return reconcile({
      ctx: this.ctx,
      routeProtocol: this.proto,
      vtep: side.device,
      plans: valid.map((p) => this.plan(p, side)),
      rejected,
      memo: this.memo,
      trustMemo: options.incremental === true,
    });
  }

  protected async doTeardown(): Promise<void> {
    // Routes via the underlay (vxlan-direct) do not go away with the device; remove them too.
    await deleteBackendRoutes(this.ctx, this.proto);
    if (await getLink(this.ctx, this.cfg.device)) await deleteLink(this.ctx, this.cfg.device);
    await removeVxlanNotrack(this.ctx);
    this.local = null;
    this.side = null;
  }
}
