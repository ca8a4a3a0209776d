// ClusterStore over any KvBackend (SQLite or etcd): settings, node registrations and subnet claims
// by compare-and-swap. The node lease is kv-nodes.ts, objects kv-objects.ts, watches kv-watch.ts,
// and what every store shares about registration registration.ts. See types.ts for key layout.
import type { KvBackend, KvLease } from "./kv.js";
import { KvObjectStore } from "./kv-objects.js";
import { decodeNode, KvNodeLease, type StoredNode } from "./kv-nodes.js";
import { watchPrefix } from "./kv-watch.js";
import { claimSubnet, registerNode, subnetPlan } from "./registration.js";
import {
  ConflictError,
  NotFoundError,
  NotInitializedError,
  type ClusterSettings,
  type ClusterSettingsInput,
  type EncryptionSettingsInput,
  type ClusterStore,
  type NodeInfo,
  type NodeLease,
  type NodeRegistration,
  type ObjectStore,
  type RegisterOptions,
  type SubnetClaim,
  type WatchHandle,
  type WatchListener,
  type WatchOptions,
} from "./types.js";
import { dnsSubdomain, normalizeEncryption, normalizeSettings, stableStringify } from "./validate.js";

export { DEFAULT_SUBNET_GRACE_SECONDS, DEFAULT_TTL_SECONDS } from "./registration.js";
export { watchPrefix } from "./kv-watch.js";
export { isClusterScoped } from "./kv-objects.js";

export interface KvStoreOptions {
  /** Key prefix; lets several clusters (or tests) share one etcd. Default "/weft". */
  prefix?: string;
}

export const subnetKeyPart = (cidr: string): string => cidr.replace("/", "-");

export class KvClusterStore implements ClusterStore {
  readonly description: string;
  readonly objects: ObjectStore;
  private readonly p: string;
  private readonly leases = new Set<KvNodeLease>();
  private readonly watches = new Set<WatchHandle>();

  constructor(
    readonly kv: KvBackend,
    options: KvStoreOptions = {},
  ) {
    this.description = kv.description;
    this.p = (options.prefix ?? "/weft").replace(/\/+$/, "");
    this.objects = new KvObjectStore(this, `${this.p}/objects/`);
  }

  get settingsKey(): string {
    return `${this.p}/cluster/settings`;
  }
  nodeKey(name: string): string {
    return `${this.p}/nodes/${name}`;
  }
  get nodesPrefix(): string {
    return `${this.p}/nodes/`;
  }
  subnetKey(cidr: string): string {
    return `${this.p}/subnets/${subnetKeyPart(cidr)}`;
  }
  get subnetsPrefix(): string {
    return `${this.p}/subnets/`;
  }

  async initCluster(input: ClusterSettingsInput): Promise<{ settings: ClusterSettings; created: boolean }> {
    const settings = normalizeSettings(input);
    const put = await this.kv.txn(
      [{ key: this.settingsKey, modRevision: 0 }],
      [{ type: "put", key: this.settingsKey, value: JSON.stringify(settings) }],
    );
    if (put.succeeded) return { settings, created: true };
    const existing = await this.getClusterSettings();
    if (existing && stableStringify(existing) === stableStringify(settings))
      return { settings: existing, created: false };
    throw new ConflictError(
      "AlreadyInitialized",
      `the cluster in ${this.description} is already initialized with cluster CIDRs ${existing?.clusterCIDRs.join(",")}, backend ${existing?.backend}` +
        `${existing?.mtu ? `, MTU ${existing.mtu}` : ""}, node subnets /${existing?.nodeSubnetPrefix.v4} (IPv4) and /${existing?.nodeSubnetPrefix.v6} (IPv6); ` +
        `settings cannot change under running nodes: re-run with the same settings, or start over with an empty store`,
    );
  }

  async getClusterSettings(): Promise<ClusterSettings | undefined> {
    const e = await this.kv.get(this.settingsKey);
    // Through normalizeSettings: settings written by an older weft get the newer fields' defaults.
    return e ? normalizeSettings(JSON.parse(e.value) as ClusterSettingsInput) : undefined;
  }

  async setEncryption(input: EncryptionSettingsInput): Promise<{ settings: ClusterSettings; changed: boolean }> {
    const encryption = normalizeEncryption(input);
    for (let attempt = 0; attempt < 10; attempt++) {
      const e = await this.kv.get(this.settingsKey);
      if (!e) throw new NotInitializedError(this.description);
      const current = normalizeSettings(JSON.parse(e.value) as ClusterSettingsInput);
      if (stableStringify(current.encryption) === stableStringify(encryption))
        return { settings: current, changed: false };
      const settings = { ...current, encryption };
      const put = await this.kv.txn(
        [{ key: this.settingsKey, modRevision: e.modRevision }],
        [{ type: "put", key: this.settingsKey, value: JSON.stringify(settings) }],
      );
      if (put.succeeded) return { settings, changed: true };
    }
    throw new ConflictError("Contention", `the cluster settings in ${this.description} kept changing; retry`);
  }

  async registerNode(reg: NodeRegistration, options: RegisterOptions = {}): Promise<NodeLease> {
    return registerNode(
      reg,
      options,
      (r, ttl, grace) => new KvNodeLease(this, r, ttl, grace),
      (l) => this.leases.add(l),
    );
  }

  /** One registration round: fresh leases, subnet claims (own ones first), then the node key. */
  async registerOnce(
    r: NodeRegistration,
    ttl: number,
    grace: number,
  ): Promise<{ node: NodeInfo; nodeLease: KvLease; subnetLease: KvLease }> {
    const plan = subnetPlan(await this.getClusterSettings(), this.description);
    const nodeLease = await this.kv.grantLease(ttl);
    let subnetLease: KvLease | undefined;
    try {
      subnetLease = await this.kv.grantLease(ttl + grace);
      const podCIDRs: string[] = [];
      for (const { clusterCIDR, prefix } of plan)
        podCIDRs.push(await this.claimSubnet(r.name, clusterCIDR, prefix, subnetLease));
      const stored: StoredNode = {
        name: r.name,
        addresses: r.addresses,
        podCIDRs,
        backendData: r.backendData ?? {},
        registeredAt: new Date().toISOString(),
        leaseTTLSeconds: ttl,
      };
      const res = await this.kv.txn(
        [],
        [{ type: "put", key: this.nodeKey(r.name), value: JSON.stringify(stored), lease: nodeLease.id }],
      );
      return { node: { ...stored, resourceVersion: String(res.revision) }, nodeLease, subnetLease };
    } catch (err) {
      // Stop renewing; claims made so far expire with the lease (a retry finds them as its own).
      nodeLease.release();
      subnetLease?.release();
      throw err;
    }
  }

  private async claimSubnet(node: string, clusterCIDR: string, prefix: number, lease: KvLease): Promise<string> {
    const claimed = await claimSubnet(node, clusterCIDR, prefix, {
      list: async () =>
        (await this.kv.list(this.subnetsPrefix)).entries.map((e) => ({
          ...(JSON.parse(e.value) as SubnetClaim),
          entry: e,
        })),
      reuse: async (own) => {
        const ok = await this.kv.txn(
          [{ key: own.entry.key, modRevision: own.entry.modRevision }],
          [{ type: "put", key: own.entry.key, value: own.entry.value, lease: lease.id }],
        );
        return ok.succeeded || undefined;
      },
      take: async (cidr) => {
        const claim: SubnetClaim = { cidr, node, claimedAt: new Date().toISOString() };
        const key = this.subnetKey(cidr);
        const ok = await this.kv.txn(
          [{ key, modRevision: 0 }],
          [{ type: "put", key, value: JSON.stringify(claim), lease: lease.id }],
        );
        return ok.succeeded || undefined;
      },
    });
    return claimed.cidr;
  }

  async getNode(name: string): Promise<NodeInfo | undefined> {
    const e = await this.kv.get(this.nodeKey(name));
    return e ? decodeNode(e) : undefined;
  }

  async listNodes(): Promise<NodeInfo[]> {
    const { entries } = await this.kv.list(this.nodesPrefix);
    return entries.map(decodeNode).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  watchNodes(listener: WatchListener<NodeInfo>, options: WatchOptions = {}): WatchHandle {
    return this.track(watchPrefix(this.kv, this.nodesPrefix, decodeNode, listener, options.replay ?? true));
  }

  async listSubnetClaims(): Promise<SubnetClaim[]> {
    const { entries } = await this.kv.list(this.subnetsPrefix);
    return entries.map((e) => JSON.parse(e.value) as SubnetClaim);
  }

  async removeNode(name: string): Promise<void> {
    dnsSubdomain("node name", name);
    const node = await this.kv.get(this.nodeKey(name));
    const claims = (await this.listSubnetClaims()).filter((c) => c.node === name);
    if (!node && claims.length === 0) throw new NotFoundError(`node "${name}" not found in ${this.description}`);
    await this.kv.txn(
      [],
      [
        ...(node ? [{ type: "delete" as const, key: node.key }] : []),
        ...claims.map((c) => ({ type: "delete" as const, key: this.subnetKey(c.cidr) })),
      ],
    );
  }

  track(w: WatchHandle): WatchHandle {
    this.watches.add(w);
    const close = w.close.bind(w);
    return {
      ready: w.ready,
      close: async () => {
        this.watches.delete(w);
        await close();
      },
    };
  }

  forget(lease: KvNodeLease): void {
    this.leases.delete(lease);
  }

  async close(): Promise<void> {
    for (const l of this.leases) l.stop();
    await Promise.allSettled([...this.watches].map((w) => w.close()));
    this.watches.clear();
    await this.kv.close();
  }
}
