// A node's registration in a KvBackend: the node key (PREFIX/nodes/NAME) under a lease of the
// node's TTL, its subnet claims under a second lease of TTL + grace period. Both are renewed by the
// backend; when either is lost the registration is re-established (RecoveringLease).
import type { KvBackend, KvEntry, KvLease } from "./kv.js";
import { RecoveringLease } from "./recovering-lease.js";
import { InvalidError, UnavailableError, type NodeInfo, type NodeLease, type NodeRegistration } from "./types.js";
import { normalizeRegistration } from "./validate.js";

/** A node as stored: NodeInfo without resourceVersion (the key's revision) and problem (a reader's finding). */
export type StoredNode = Omit<NodeInfo, "resourceVersion" | "problem">;

export function decodeNode(e: KvEntry): NodeInfo {
  const s = JSON.parse(e.value) as StoredNode;
  return { ...s, resourceVersion: String(e.modRevision) };
}

/** What a node lease needs of its cluster store. */
export interface KvNodeHost {
  readonly kv: KvBackend;
  nodeKey(name: string): string;
  registerOnce(
    r: NodeRegistration,
    ttl: number,
    grace: number,
  ): Promise<{ node: NodeInfo; nodeLease: KvLease; subnetLease: KvLease }>;
  forget(lease: KvNodeLease): void;
}

export class KvNodeLease extends RecoveringLease implements NodeLease {
  private nodeLease?: KvLease;
  private subnetLease?: KvLease;

  constructor(
    private readonly store: KvNodeHost,
    private reg: NodeRegistration,
    private readonly ttl: number,
    private readonly grace: number,
  ) {
    super();
  }

  async establish(): Promise<void> {
    const { node, nodeLease, subnetLease } = await this.store.registerOnce(this.reg, this.ttl, this.grace);
    this.node = node;
    this.nodeLease = nodeLease;
    this.subnetLease = subnetLease;
    const lost = (err: Error): void => this.lost(nodeLease, err);
    nodeLease.onLost(lost);
    subnetLease.onLost(lost);
  }

  private lost(which: KvLease, err: Error): void {
    if (this.stopped || this.recovering || (which !== this.nodeLease && which !== this.subnetLease)) return;
    // Set first: releasing the other lease reports its loss here again.
    this.recovering = true;
    this.nodeLease?.release();
    this.subnetLease?.release();
    this.startRecovery(err);
  }

  protected override abandon(): void {
    this.nodeLease?.release();
    this.subnetLease?.release();
  }

  async update(patch: { addresses?: string[]; backendData?: Record<string, string> }): Promise<NodeInfo> {
    if (this.stopped) throw new InvalidError(`node ${this.reg.name}: the lease was released`);
    const r = normalizeRegistration({ ...this.reg, ...patch });
    const lease = this.nodeLease;
    if (!lease || this.recovering)
      throw new UnavailableError(
        `node ${this.reg.name}: the lease is being re-established after a store outage; retry shortly`,
      );
    const stored: StoredNode = {
      name: r.name,
      addresses: r.addresses,
      podCIDRs: this.node.podCIDRs,
      backendData: r.backendData ?? {},
      registeredAt: this.node.registeredAt,
      leaseTTLSeconds: this.ttl,
    };
    const res = await this.store.kv.txn(
      [],
      [{ type: "put", key: this.store.nodeKey(r.name), value: JSON.stringify(stored), lease: lease.id }],
    );
    this.reg = r;
    this.node = { ...stored, resourceVersion: String(res.revision) };
    return this.node;
  }

  /** Stops renewing (store close: the leases expire by TTL, as after a crash). */
  stop(): void {
    this.stopped = true;
    this.nodeLease?.release();
    this.subnetLease?.release();
  }

  async release(options: { freeSubnets?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.store.forget(this);
    this.subnetLease?.release();
    await this.nodeLease?.revoke();
    if (options.freeSubnets) await this.subnetLease?.revoke();
  }
}
