// ClusterStore over any KvBackend (SQLite or etcd): settings, node leases, subnet claims by
// compare-and-swap, Kubernetes-style objects and self-healing watches. See types.ts for key layout.
import { randomUUID } from "node:crypto";
import { formatCidr, pickFreeSubnet, subnetCount, subnetIndex } from "../net/cidr.js";
import { parseCidr } from "./validate.js";
import type { KvBackend, KvEntry, KvLease, KvWatchEvent } from "./kv.js";
import {
  ConflictError,
  ExhaustedError,
  InvalidError,
  NotFoundError,
  NotInitializedError,
  UnavailableError,
  isStoreError,
  type ApplyAction,
  type ClusterSettings,
  type ClusterSettingsInput,
  type ClusterStore,
  type NodeInfo,
  type NodeLease,
  type NodeRegistration,
  type ObjectInput,
  type ObjectRef,
  type ObjectStore,
  type RegisterOptions,
  type StoredObject,
  type SubnetClaim,
  type WatchHandle,
  type WatchListener,
  type WatchOptions,
} from "./types.js";
import { RecoveringLease } from "./recovering-lease.js";
import { dnsLabel, dnsSubdomain, normalizeRegistration, normalizeSettings, stableStringify, staleConflict, checkStringMap, wholeSeconds } from "./validate.js";

export const DEFAULT_TTL_SECONDS = 15;
export const DEFAULT_SUBNET_GRACE_SECONDS = 300;
/** How many compare-and-swap rounds a claim may lose before giving up (20 racing agents need a few). */
const MAX_CAS_ATTEMPTS = 64;

export interface KvStoreOptions {
  /** Key prefix; lets several clusters (or tests) share one etcd. Default "/weft". */
  prefix?: string;
}

interface StoredNode {
  name: string;
  addresses: string[];
  podCIDRs: string[];
  backendData: Record<string, string>;
  registeredAt: string;
  leaseTTLSeconds: number;
}

export const subnetKeyPart = (cidr: string): string => cidr.replace("/", "-");

export class KvClusterStore implements ClusterStore {
  readonly description: string;
  readonly objects: ObjectStore;
  private readonly p: string;
  private readonly leases = new Set<NodeLeaseImpl>();
  private readonly watches = new Set<WatchHandle>();

  constructor(readonly kv: KvBackend, options: KvStoreOptions = {}) {
    this.description = kv.description;
    this.p = (options.prefix ?? "/weft").replace(/\/+$/, "");
    this.objects = new KvObjectStore(this, `${this.p}/objects/`);
  }

  get settingsKey(): string { return `${this.p}/cluster/settings`; }
  nodeKey(name: string): string { return `${this.p}/nodes/${name}`; }
  get nodesPrefix(): string { return `${this.p}/nodes/`; }
  subnetKey(cidr: string): string { return `${this.p}/subnets/${subnetKeyPart(cidr)}`; }
  get subnetsPrefix(): string { return `${this.p}/subnets/`; }

  async initCluster(input: ClusterSettingsInput): Promise<{ settings: ClusterSettings; created: boolean }> {
    const settings = normalizeSettings(input);
    const put = await this.kv.txn([{ key: this.settingsKey, modRevision: 0 }], [{ type: "put", key: this.settingsKey, value: JSON.stringify(settings) }]);
    if (put.succeeded) return { settings, created: true };
    const existing = await this.getClusterSettings();
    if (existing && stableStringify(existing) === stableStringify(settings)) return { settings: existing, created: false };
    throw new ConflictError(
      "AlreadyInitialized",
      `the cluster in ${this.description} is already initialized with cluster CIDRs ${existing?.clusterCIDRs.join(",")}, backend ${existing?.backend}` +
        `${existing?.mtu ? `, MTU ${existing.mtu}` : ""}, node subnets /${existing?.nodeSubnetPrefix.v4} (IPv4) and /${existing?.nodeSubnetPrefix.v6} (IPv6); ` +
        `settings cannot change under running nodes: re-run with the same settings, or start over with an empty store`,
    );
  }

  async getClusterSettings(): Promise<ClusterSettings | undefined> {
    const e = await this.kv.get(this.settingsKey);
    return e ? (JSON.parse(e.value) as ClusterSettings) : undefined;
  }

  async registerNode(reg: NodeRegistration, options: RegisterOptions = {}): Promise<NodeLease> {
    const r = normalizeRegistration(reg);
    const ttl = wholeSeconds("lease TTL", options.ttlSeconds ?? DEFAULT_TTL_SECONDS);
    const grace = wholeSeconds("subnet grace period", options.subnetGraceSeconds ?? DEFAULT_SUBNET_GRACE_SECONDS);
    const lease = new NodeLeaseImpl(this, r, ttl, grace);
    await lease.establish();
    this.leases.add(lease);
    return lease;
  }

  /** One registration round: fresh leases, subnet claims (own ones first), then the node key. */
  async registerOnce(r: NodeRegistration, ttl: number, grace: number): Promise<{ node: NodeInfo; nodeLease: KvLease; subnetLease: KvLease }> {
    const settings = await this.getClusterSettings();
    if (!settings) throw new NotInitializedError(this.description);
    const nodeLease = await this.kv.grantLease(ttl);
    let subnetLease: KvLease | undefined;
    try {
      subnetLease = await this.kv.grantLease(ttl + grace);
      const podCIDRs: string[] = [];
      for (const c of settings.clusterCIDRs) {
        const cluster = parseCidr(c);
        const prefix = cluster.family === 4 ? settings.nodeSubnetPrefix.v4 : settings.nodeSubnetPrefix.v6;
        podCIDRs.push(await this.claimSubnet(r.name, c, prefix, subnetLease));
      }
      const stored: StoredNode = {
        name: r.name,
        addresses: r.addresses,
        podCIDRs,
        backendData: r.backendData ?? {},
        registeredAt: new Date().toISOString(),
        leaseTTLSeconds: ttl,
      };
      const res = await this.kv.txn([], [{ type: "put", key: this.nodeKey(r.name), value: JSON.stringify(stored), lease: nodeLease.id }]);
      return { node: { ...stored, resourceVersion: String(res.revision) }, nodeLease, subnetLease };
    } catch (err) {
      // Stop renewing; claims made so far expire with the lease (a retry finds them as its own).
      nodeLease.release();
      subnetLease?.release();
      throw err;
    }
  }

  private async claimSubnet(node: string, clusterText: string, prefix: number, lease: KvLease): Promise<string> {
    const cluster = parseCidr(clusterText);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const { entries } = await this.kv.list(this.subnetsPrefix);
      const claims = entries.map((e) => ({ e, claim: JSON.parse(e.value) as SubnetClaim }));
      // A restarted agent gets its own subnet back while the reservation lasts.
      const own = claims.find(({ claim }) => claim.node === node && subnetIndex(cluster, prefix, parseCidr(claim.cidr)) !== undefined);
      if (own) {
        const ok = await this.kv.txn([{ key: own.e.key, modRevision: own.e.modRevision }], [{ type: "put", key: own.e.key, value: own.e.value, lease: lease.id }]);
        if (ok.succeeded) return own.claim.cidr;
        continue;
      }
      const taken = new Set(claims.map(({ claim }) => claim.cidr));
      const pick = pickFreeSubnet(cluster, prefix, taken, attempt === 0 ? node : `${node}#${attempt}`);
      if (!pick) {
        throw new ExhaustedError(`no free /${prefix} node subnet is left in ${clusterText} (${subnetCount(cluster, prefix)} in all, held by live nodes or reserved for dead ones during their grace period): use a larger cluster CIDR or remove dead nodes with \`weft node delete\``);
      }
      const cidr = formatCidr(pick);
      const claim: SubnetClaim = { cidr, node, claimedAt: new Date().toISOString() };
      const key = this.subnetKey(cidr);
      const ok = await this.kv.txn([{ key, modRevision: 0 }], [{ type: "put", key, value: JSON.stringify(claim), lease: lease.id }]);
      if (ok.succeeded) return cidr;
    }
    throw new ConflictError("Contention", `node ${node} lost the race for a subnet of ${clusterText} ${MAX_CAS_ATTEMPTS} times in a row: too many agents registering at once; retry`);
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
    await this.kv.txn([], [
      ...(node ? [{ type: "delete" as const, key: node.key }] : []),
      ...claims.map((c) => ({ type: "delete" as const, key: this.subnetKey(c.cidr) })),
    ]);
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

  forget(lease: NodeLeaseImpl): void {
    this.leases.delete(lease);
  }

  async close(): Promise<void> {
    for (const l of this.leases) l.stop();
    await Promise.allSettled([...this.watches].map((w) => w.close()));
    this.watches.clear();
    await this.kv.close();
  }
}

function decodeNode(e: KvEntry): NodeInfo {
  const s = JSON.parse(e.value) as StoredNode;
  return { ...s, resourceVersion: String(e.modRevision) };
}

class NodeLeaseImpl extends RecoveringLease implements NodeLease {
  private nodeLease?: KvLease;
  private subnetLease?: KvLease;

  constructor(private readonly store: KvClusterStore, private reg: NodeRegistration, private readonly ttl: number, private readonly grace: number) {
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
    if (this.stopped || this.recovering || which !== this.nodeLease && which !== this.subnetLease) return;
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
    if (!lease || this.recovering) throw new UnavailableError(`node ${this.reg.name}: the lease is being re-established after a store outage; retry shortly`);
    const stored: StoredNode = { name: r.name, addresses: r.addresses, podCIDRs: this.node.podCIDRs, backendData: r.backendData ?? {}, registeredAt: this.node.registeredAt, leaseTTLSeconds: this.ttl };
    const res = await this.store.kv.txn([], [{ type: "put", key: this.store.nodeKey(r.name), value: JSON.stringify(stored), lease: lease.id }]);
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

// ---- watches -------------------------------------------------------------------------------------

/**
 * List + watch under a prefix, delivering typed added/updated/removed events. Survives outages:
 * the backend resumes from its last revision; if history is gone (onReset) or the backend failed,
 * this re-lists and emits the differences against what the listener has already seen.
 */
export function watchPrefix<T>(
  kv: KvBackend,
  prefix: string,
  decode: (e: KvEntry) => T,
  listener: WatchListener<T>,
  replay: boolean,
  filter: (key: string) => boolean = () => true,
): WatchHandle {
  const known = new Map<string, { rev: number; obj: T }>();
  let closed = false;
  let first = true;
  let inner: { cancel(): Promise<void> } | undefined;
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));

  // A value under our prefix that is not ours (hand-written with etcdctl, say) is skipped, not fatal.
  const tryDecode = (e: KvEntry): T | undefined => {
    try { return decode(e); } catch { return undefined; }
  };

  const deliver = (ev: Parameters<WatchListener<T>>[0]): void => {
    try { listener(ev); } catch (e) { setImmediate(() => { throw e; }); }
  };

  const onEvents = (events: KvWatchEvent[]): void => {
    if (closed) return;
    for (const ev of events) {
      if (!filter(ev.key)) continue;
      const prev = known.get(ev.key);
      if (ev.type === "delete") {
        if (prev) {
          known.delete(ev.key);
          deliver({ type: "removed", object: prev.obj });
        }
        continue;
      }
      if (prev && prev.rev >= ev.modRevision) continue; // already seen (replayed after a re-list)
      const obj = tryDecode({ key: ev.key, value: ev.value ?? "", modRevision: ev.modRevision });
      if (obj === undefined) continue;
      known.set(ev.key, { rev: ev.modRevision, obj });
      deliver(prev ? { type: "updated", object: obj, previous: prev.obj } : { type: "added", object: obj });
    }
  };

  const sync = async (): Promise<void> => {
    let delay = 100;
    while (!closed) {
      try {
        const { entries, revision } = await kv.list(prefix);
        if (closed) return;
        const seen = new Set<string>();
        for (const e of entries) {
          if (!filter(e.key)) continue;
          seen.add(e.key);
          const prev = known.get(e.key);
          if (prev && prev.rev === e.modRevision) continue;
          const obj = tryDecode(e);
          if (obj === undefined) continue;
          known.set(e.key, { rev: e.modRevision, obj });
          if (prev) deliver({ type: "updated", object: obj, previous: prev.obj });
          else if (replay || !first) deliver({ type: "added", object: obj });
        }
        for (const [key, prev] of [...known]) {
          if (!seen.has(key)) {
            known.delete(key);
            deliver({ type: "removed", object: prev.obj });
          }
        }
        first = false;
        inner = kv.watch(prefix, revision, { onEvents, onReset: () => void resync() });
        resolveReady();
        return;
      } catch (err) {
        if (!isStoreError(err, "Unavailable")) setImmediate(() => { throw err; });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  };

  const resync = async (): Promise<void> => {
    const old = inner;
    inner = undefined;
    await old?.cancel().catch(() => undefined);
    await sync();
  };

  void sync();
  return {
    ready,
    close: async () => {
      closed = true;
      resolveReady();
      await inner?.cancel().catch(() => undefined);
    },
  };
}

// ---- objects -------------------------------------------------------------------------------------

/** Kinds without a namespace (the rest are namespaced), as in Kubernetes. */
const CLUSTER_SCOPED = new Set(["Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass", "PriorityClass"]);

export const isClusterScoped = (kind: string): boolean => CLUSTER_SCOPED.has(kind);

function checkKind(kind: unknown): string {
  if (typeof kind !== "string" || !/^[A-Z][A-Za-z0-9]{0,62}$/.test(kind)) {
    throw new InvalidError(`kind "${String(kind)}" is not valid: use the Kubernetes kind, e.g. Pod, Namespace, NetworkPolicy`);
  }
  return kind;
}

const plural = (kind: string): string => `${kind.toLowerCase()}s`;

class KvObjectStore implements ObjectStore {
  constructor(private readonly store: KvClusterStore, private readonly prefix: string) {}

  private get kv(): KvBackend { return this.store.kv; }

  private resolve(ref: ObjectRef): { key: string; kind: string; name: string; namespace?: string; what: string } {
    const kind = checkKind(ref.kind);
    const name = dnsSubdomain(`${kind} name`, ref.name);
    if (isClusterScoped(kind)) return { key: `${this.prefix}${kind}/${name}`, kind, name, what: `${plural(kind)} "${name}"` };
    const namespace = dnsLabel("namespace", ref.namespace ?? "default");
    return { key: `${this.prefix}${kind}/${namespace}/${name}`, kind, name, namespace, what: `${plural(kind)} "${name}" in namespace "${namespace}"` };
  }

  private decode(e: KvEntry): StoredObject {
    const o = JSON.parse(e.value) as StoredObject;
    o.metadata.resourceVersion = String(e.modRevision);
    return o;
  }

  /** The object as stored: what the user gave, plus server fields, minus resourceVersion (it is the key's revision). */
  private build(input: ObjectInput, r: { kind: string; name: string; namespace?: string }, base?: StoredObject): StoredObject {
    if (typeof input.apiVersion !== "string" || input.apiVersion === "") throw new InvalidError(`${r.kind} "${r.name}": apiVersion is missing`);
    const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ct, ...meta } = input.metadata as ObjectInput["metadata"] & { uid?: string; creationTimestamp?: string };
    checkStringMap(`${r.kind} "${r.name}" labels`, meta.labels);
    checkStringMap(`${r.kind} "${r.name}" annotations`, meta.annotations);
    const labels = r.kind === "Namespace" ? { ...(meta.labels ?? {}), "kubernetes.io/metadata.name": r.name } : meta.labels;
    const metadata: StoredObject["metadata"] = {
      ...meta,
      name: r.name,
      ...(r.namespace !== undefined ? { namespace: r.namespace } : {}),
      ...(labels ? { labels } : {}),
      uid: base?.metadata.uid ?? randomUUID(),
      resourceVersion: "",
      creationTimestamp: base?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    };
    if (r.namespace === undefined) delete metadata.namespace;
    const out: StoredObject = { ...input, apiVersion: input.apiVersion, kind: r.kind, metadata };
    // status belongs to the status subresource: a replace keeps what is stored.
    if (base) {
      if (base.status !== undefined) out.status = base.status;
      else delete out.status;
    }
    return out;
  }

  private serialize(o: StoredObject): string {
    const { resourceVersion: _rv, ...metadata } = o.metadata;
    return JSON.stringify({ ...o, metadata });
  }

  async get(ref: ObjectRef): Promise<StoredObject> {
    const r = this.resolve(ref);
    const e = await this.kv.get(r.key);
    if (!e) throw new NotFoundError(`${r.what} not found`);
    return this.decode(e);
  }

  async list(kind: string, options: { namespace?: string } = {}): Promise<StoredObject[]> {
    checkKind(kind);
    const ns = !isClusterScoped(kind) && options.namespace !== undefined ? `${dnsLabel("namespace", options.namespace)}/` : "";
    const { entries } = await this.kv.list(`${this.prefix}${kind}/${ns}`);
    return entries.map((e) => this.decode(e));
  }

  async create(input: ObjectInput): Promise<StoredObject> {
    const r = this.resolve({ kind: input.kind, name: input.metadata?.name, namespace: input.metadata?.namespace });
    const obj = this.build(input, r);
    const res = await this.kv.txn([{ key: r.key, modRevision: 0 }], [{ type: "put", key: r.key, value: this.serialize(obj) }]);
    if (!res.succeeded) throw new ConflictError("AlreadyExists", `${r.what} already exists`);
    obj.metadata.resourceVersion = String(res.revision);
    return obj;
  }

  async apply(input: ObjectInput): Promise<{ object: StoredObject; action: ApplyAction }> {
    const r = this.resolve({ kind: input.kind, name: input.metadata?.name, namespace: input.metadata?.namespace });
    const wantRv = input.metadata.resourceVersion;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const e = await this.kv.get(r.key);
      if (!e) {
        if (wantRv !== undefined) throw new ConflictError("ResourceVersion", `${r.what} was deleted since resourceVersion ${wantRv} was read: read it again`);
        const obj = this.build(input, r);
        const res = await this.kv.txn([{ key: r.key, modRevision: 0 }], [{ type: "put", key: r.key, value: this.serialize(obj) }]);
        if (!res.succeeded) continue;
        obj.metadata.resourceVersion = String(res.revision);
        return { object: obj, action: "created" };
      }
      const cur = this.decode(e);
      if (wantRv !== undefined && wantRv !== cur.metadata.resourceVersion) throw staleConflict(r.what, wantRv, cur);
      const next = this.build(input, r, cur);
      const value = this.serialize(next);
      if (stableStringify(JSON.parse(value)) === stableStringify(JSON.parse(e.value))) return { object: cur, action: "unchanged" };
      const res = await this.kv.txn([{ key: r.key, modRevision: e.modRevision }], [{ type: "put", key: r.key, value }]);
      if (!res.succeeded) {
        if (wantRv !== undefined) throw staleConflict(r.what, wantRv);
        continue;
      }
      next.metadata.resourceVersion = String(res.revision);
      return { object: next, action: "configured" };
    }
    throw new ConflictError("Contention", `${r.what} kept changing while being applied; retry`);
  }

  async delete(ref: ObjectRef, options: { resourceVersion?: string } = {}): Promise<StoredObject> {
    const r = this.resolve(ref);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const e = await this.kv.get(r.key);
      if (!e) throw new NotFoundError(`${r.what} not found`);
      const cur = this.decode(e);
      if (options.resourceVersion !== undefined && options.resourceVersion !== cur.metadata.resourceVersion) throw staleConflict(r.what, options.resourceVersion, cur);
      const res = await this.kv.txn([{ key: r.key, modRevision: e.modRevision }], [{ type: "delete", key: r.key }]);
      if (res.succeeded) return cur;
    }
    throw new ConflictError("Contention", `${r.what} kept changing while being deleted; retry`);
  }

  async updateStatus(ref: ObjectRef, status: Record<string, unknown>, options: { resourceVersion?: string } = {}): Promise<StoredObject> {
    const r = this.resolve(ref);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const e = await this.kv.get(r.key);
      if (!e) throw new NotFoundError(`${r.what} not found`);
      const cur = this.decode(e);
      if (options.resourceVersion !== undefined && options.resourceVersion !== cur.metadata.resourceVersion) throw staleConflict(r.what, options.resourceVersion, cur);
      const next: StoredObject = { ...cur, status };
      const res = await this.kv.txn([{ key: r.key, modRevision: e.modRevision }], [{ type: "put", key: r.key, value: this.serialize(next) }]);
      if (res.succeeded) return { ...next, metadata: { ...next.metadata, resourceVersion: String(res.revision) } };
    }
    throw new ConflictError("Contention", `${r.what} kept changing while its status was updated; retry`);
  }

  watch(kind: string, listener: WatchListener<StoredObject>, options: WatchOptions & { namespace?: string } = {}): WatchHandle {
    checkKind(kind);
    const ns = !isClusterScoped(kind) && options.namespace !== undefined ? `${dnsLabel("namespace", options.namespace)}/` : "";
    return this.store.track(watchPrefix(this.kv, `${this.prefix}${kind}/${ns}`, (e) => this.decode(e), listener, options.replay ?? true));
  }
}

