// The cluster store: ONE interface, several implementations (local SQLite, etcd, later Kubernetes).
// Modelled on flannel's SubnetManager: nodes hold a lease that their agent renews; each node claims
// a pod subnet per address family by compare-and-swap; everyone else learns about nodes by watching.
//
// Key layout of the key-value implementations (local and etcd), under a prefix (default "/weft"):
//   <prefix>/cluster/settings                    ClusterSettings (JSON), written once by `cluster init`
//   <prefix>/nodes/<name>                        NodeInfo (JSON), attached to the node's lease (TTL)
//   <prefix>/subnets/<cidr with "/" as "-">      SubnetClaim (JSON), e.g. /weft/subnets/10.244.3.0-24,
//                                                /weft/subnets/fd00:10:244:3::-64; attached to a second
//                                                lease with TTL = node TTL + grace period, so a dead
//                                                node's subnet stays reserved for the grace period
//   <prefix>/objects/<Kind>/<namespace>/<name>   namespaced objects (Pod, NetworkPolicy, ...)
//   <prefix>/objects/<Kind>/<name>               cluster-scoped objects (Namespace)
// A subnet key exists <=> the subnet is taken; creating it is guarded by "key does not exist", which
// is what makes two nodes holding the same subnet impossible.

export type { IpFamily as Family } from "../net/ip.js";
export * from "./errors.js";

export const BACKENDS = ["vxlan", "host-gw", "vxlan-direct", "bgp"] as const;
export type BackendType = (typeof BACKENDS)[number];

export interface ClusterSettings {
  /** One IPv4 and/or one IPv6 CIDR, canonical text. The first one is the cluster's primary family. */
  clusterCIDRs: string[];
  backend: BackendType;
  /** MTU override for pod interfaces; absent = derived from the underlay by the agent. */
  mtu?: number;
  /** Prefix length of each node's pod subnet, per family. */
  nodeSubnetPrefix: { v4: number; v6: number };
  /**
   * Where a node's pod subnets come from: "weft" = weft claims them from the cluster CIDRs (every
   * store); "node" = the Node's spec.podCIDRs, assigned by kube-controller-manager
   * (--allocate-node-cidrs; --store kubernetes only), as flannel's kube subnet manager does.
   */
  podCIDRSource: PodCIDRSource;
  /** SNAT pod traffic that leaves the cluster CIDRs to the node's address (flannel's ipMasq). */
  ipMasq: boolean;
  /** The bgp backend's settings; absent = its defaults (AS 64512). Only with backend "bgp". */
  bgp?: BgpSettingsInput;
  /** Encryption of pod traffic between nodes; the only setting that may change on a live cluster. */
  encryption: EncryptionSettings;
}

export const ENCRYPTION_TYPES = ["none", "wireguard", "ipsec"] as const;
export type EncryptionType = (typeof ENCRYPTION_TYPES)[number];

export interface EncryptionSettings {
  type: EncryptionType;
  /**
   * true (default): a pod packet to a remote pod that cannot be encrypted (peer key unknown, daemon
   * down, during a switch) is dropped, never sent in clear.
   */
  strict: boolean;
  /** Encrypt node-to-node (underlay address to underlay address) traffic too. Default false. */
  nodeToNode: boolean;
}

export type EncryptionSettingsInput = { type: EncryptionType; strict?: boolean; nodeToNode?: boolean };

export const DEFAULT_ENCRYPTION: EncryptionSettings = { type: "none", strict: true, nodeToNode: false };

export interface BgpSettingsInput {
  /** The cluster's AS number for the iBGP node mesh: 1..4294967295. */
  asNumber?: number;
}

export const POD_CIDR_SOURCES = ["weft", "node"] as const;
export type PodCIDRSource = (typeof POD_CIDR_SOURCES)[number];

/** What `cluster init` takes: nodeSubnetPrefix defaults to /24 (IPv4) and /64 (IPv6). */
export interface ClusterSettingsInput {
  clusterCIDRs: string[];
  backend: BackendType;
  mtu?: number;
  nodeSubnetPrefix?: { v4?: number; v6?: number };
  /** Default "weft". */
  podCIDRSource?: PodCIDRSource;
  /** Default true. */
  ipMasq?: boolean;
  bgp?: BgpSettingsInput;
  /** Default { type: "none", strict: true, nodeToNode: false }. */
  encryption?: EncryptionSettingsInput;
}

export const DEFAULT_NODE_SUBNET_PREFIX = { v4: 24, v6: 64 } as const;

export interface NodeRegistration {
  /** Node name: a DNS-1123 subdomain (lower-case letters, digits, '-', '.'). */
  name: string;
  /** Underlay (host) addresses, at most one per family; VXLAN/host-gw peers send to these. */
  addresses: string[];
  /** Backend-specific data published to peers, e.g. { vtepMAC: "aa:bb:..." }. */
  backendData?: Record<string, string>;
}

export interface NodeInfo {
  name: string;
  addresses: string[];
  /** The node's pod subnets, in the order of the cluster CIDRs. */
  podCIDRs: string[];
  backendData: Record<string, string>;
  /** When this agent (re)registered, ISO 8601. */
  registeredAt: string;
  /** The TTL of the node's lease: the node disappears this long after its agent stops renewing. */
  leaseTTLSeconds: number;
  /** Store revision of the last change to this node. */
  resourceVersion: string;
  /**
   * Set when the store holds part of the node in a form weft cannot read (e.g. a hand-edited
   * Node annotation); the unreadable part is then empty. Shown by `weft status`, logged by agents.
   */
  problem?: string;
}

export interface RegisterOptions {
  /** Lease TTL; the agent renews it every ttl/3. Default 15 s. Whole seconds (etcd's unit), >= 1. */
  ttlSeconds?: number;
  /** How long a dead node's subnet stays reserved for it after its lease expires. Default 300 s. */
  subnetGraceSeconds?: number;
}

export type LeaseState = { state: "lost"; error: Error } | { state: "restored"; node: NodeInfo };

/** A node's registration, kept alive until release() or close() of the store. */
export interface NodeLease {
  /** The node as last written by this lease (podCIDRs included). */
  readonly node: NodeInfo;
  /** Changes addresses or backend data (the subnets stay). */
  update(patch: { addresses?: string[]; backendData?: Record<string, string> }): Promise<NodeInfo>;
  /**
   * Graceful shutdown: the node disappears now. Its subnets stay reserved for the grace period
   * (so a restart gets them back), unless freeSubnets is set (decommissioning).
   */
  release(options?: { freeSubnets?: boolean }): Promise<void>;
  /**
   * Called when the lease is lost (store unreachable for longer than the TTL) and again when it has
   * been re-established by itself (same subnets if they were still reserved). Returns unsubscribe.
   */
  onStateChange(listener: (s: LeaseState) => void): () => void;
}

export type WatchEvent<T> =
  { type: "added"; object: T } | { type: "updated"; object: T; previous: T } | { type: "removed"; object: T };

export interface WatchOptions {
  /** Deliver an "added" event for every existing item first (default true): list + watch in one. */
  replay?: boolean;
}

/**
 * A running watch. It survives store outages by itself: it resumes from the last revision it saw
 * and, if that history is gone, re-lists and delivers the differences as events.
 */
export interface WatchHandle {
  /** Resolves when the replay (if any) has been delivered and the watch is live. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

export type WatchListener<T> = (event: WatchEvent<T>) => void;

// ---- Kubernetes-style objects ---------------------------------------------------------------

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
}

export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [extra: string]: unknown;
}

/** An object as a user writes it: uid, resourceVersion and creationTimestamp are filled in by the store. */
export interface ObjectInput {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    /** If set on apply/delete, the write happens only if the stored object still has it. */
    resourceVersion?: string;
    [extra: string]: unknown;
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [extra: string]: unknown;
}

export interface ObjectRef {
  kind: string;
  name: string;
  /** Required for namespaced kinds ("default" if omitted); ignored for cluster-scoped kinds. */
  namespace?: string;
}

export type ApplyAction = "created" | "configured" | "unchanged";

export interface ObjectStore {
  get(ref: ObjectRef): Promise<StoredObject>; // NotFoundError
  /** Objects of a kind, sorted by namespace then name; namespace filters namespaced kinds. */
  list(kind: string, options?: { namespace?: string }): Promise<StoredObject[]>;
  /** Fails with ConflictError(AlreadyExists) if it exists. */
  create(obj: ObjectInput): Promise<StoredObject>;
  /**
   * Create or replace (kubectl apply/replace semantics): labels, annotations and spec are replaced;
   * uid, creationTimestamp and status are kept. "unchanged" writes nothing.
   */
  apply(obj: ObjectInput): Promise<{ object: StoredObject; action: ApplyAction }>;
  /** Returns the deleted object; NotFoundError if absent. */
  delete(ref: ObjectRef, options?: { resourceVersion?: string }): Promise<StoredObject>;
  /** Replaces status only; ConflictError(ResourceVersion) if resourceVersion is given and stale. */
  updateStatus(
    ref: ObjectRef,
    status: Record<string, unknown>,
    options?: { resourceVersion?: string },
  ): Promise<StoredObject>;
  watch(
    kind: string,
    listener: WatchListener<StoredObject>,
    options?: WatchOptions & { namespace?: string },
  ): WatchHandle;
}

// ---- the store ---------------------------------------------------------------------------------

export interface ClusterStore {
  /** Human-readable location for messages, e.g. "etcd at http://127.0.0.1:2379" or "local store /var/lib/weft/store.db". */
  readonly description: string;

  /**
   * Writes the cluster settings once (compare-and-swap on absence). Re-running with the same settings
   * is a no-op (created: false); different settings fail with ConflictError(AlreadyInitialized).
   */
  initCluster(input: ClusterSettingsInput): Promise<{ settings: ClusterSettings; created: boolean }>;
  /** undefined if the cluster has not been initialized. */
  getClusterSettings(): Promise<ClusterSettings | undefined>;
  /**
   * Changes the encryption setting of an initialized cluster (the one setting that may change under
   * running nodes: agents pick it up live). Throws NotInitializedError, InvalidError.
   */
  setEncryption(input: EncryptionSettingsInput): Promise<{ settings: ClusterSettings; changed: boolean }>;

  /**
   * Registers (or re-registers after a restart) a node and claims one pod subnet per cluster CIDR.
   * A node that held subnets before (still reserved) gets the same ones back.
   * Throws NotInitializedError, ExhaustedError, UnavailableError.
   */
  registerNode(reg: NodeRegistration, options?: RegisterOptions): Promise<NodeLease>;
  getNode(name: string): Promise<NodeInfo | undefined>;
  /** Live nodes (lease not expired), sorted by name. */
  listNodes(): Promise<NodeInfo[]>;
  watchNodes(listener: WatchListener<NodeInfo>, options?: WatchOptions): WatchHandle;
  /** Subnet claims, including those of dead nodes still in their grace period. */
  listSubnetClaims(): Promise<SubnetClaim[]>;
  /** Administrative removal: the node disappears and its subnets are freed at once. */
  removeNode(name: string): Promise<void>;

  readonly objects: ObjectStore;

  /** Closes connections and stops renewals. Leases are NOT revoked: they expire by TTL (as on a crash). */
  close(): Promise<void>;
}

export interface SubnetClaim {
  cidr: string;
  node: string;
  claimedAt: string;
}
