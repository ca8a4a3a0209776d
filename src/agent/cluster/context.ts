// What the parts of the node's membership share: the options, the state, and what joining learnt
// (settings, lease, backend, pod CIDRs and MTU), plus the store-contact bookkeeping.
import type { Logger } from "pino";
import type { Backend } from "../../backends/index.js";
import type { DeviceStatus } from "../../backends/types.js";
import type { Pool } from "../../ipam/pool.js";
import type { KernelContext } from "../../kernel/tracked.js";
import type { ClusterSettings, ClusterStore, NodeLease } from "../../store/types.js";
import type { EncryptionControl } from "./encryption.js";

export interface MembershipOptions {
  store: ClusterStore;
  node: string;
  /** Underlay addresses, one per family (may be empty on a single host). */
  underlay: string[];
  /**
   * Single host (--store local --pod-cidr): the cluster is this node's pod CIDRs, taken whole;
   * no backend runs (there are no peers to reach).
   */
  single?: { pools: Pool[] };
  ttlSeconds?: number;
  subnetGraceSeconds?: number;
  /**
   * On stop, keep the node's lease live this long for the agent that replaces it (a rolling
   * update), where the store can (Kubernetes); 0 or absent: it runs out by the TTL.
   */
  handoverSeconds?: number;
  /** The agent's state dir: backends that keep files (bgp: BIRD's) put them under it. */
  stateDir?: string;
  /** The backend's kernel context (how its peer writes reach the kernel). */
  kernel?: KernelContext;
  /** How often the encryption setting is read again (live switching). Default 1000 ms. */
  encryptionPollMs?: number;
  /** Periodic peer re-sync (drift repair). Default 10 s. */
  resyncMs?: number;
  /** Explicit pod MTU (--mtu); otherwise the backend's (which honours the cluster's MTU setting). */
  mtu?: number;
  /** Pod MTU on a single host without --mtu: the underlay's. */
  singleHostMtu?: () => Promise<number>;
  log: Logger;
  /** Facts about the node's pods for the published report. */
  pods: () => { count: number; stranded: number };
  /** The pod CIDRs or MTU changed (first join, or a lease re-established with other subnets). */
  onNetwork: (n: { pools: Pool[]; mtu: number }) => void;
}

export type MembershipState = "joining" | "ready" | "lost" | "stopped";

export interface JoinResult {
  settings: ClusterSettings;
  podCIDRs: string[];
  mtu: number;
  /** Kernel changes the backend's setup made (0 after a restart on an unchanged node). */
  setupChanges: number;
  /** Kernel changes of the first peer sync. */
  firstSyncChanges: number;
  peers: number;
}

/** The membership's shared, mutable state (one per agent). */
export interface ClusterContext {
  readonly o: MembershipOptions;
  state: MembershipState;
  settings: ClusterSettings | undefined;
  lease: NodeLease | undefined;
  backend: Backend | undefined;
  backendData: Record<string, string | number | boolean>;
  /** Encryption between nodes (agent/cluster/encryption.ts); set by the membership. */
  encryption: EncryptionControl | undefined;
  podCIDRs: string[];
  podMtu: number;
  /** The backend's device and its offloads, from setup (vxlan), for the published report. */
  device?: DeviceStatus;
  /** Last time the store answered (a request of ours succeeded). */
  lastStoreContact: number | undefined;
  lastStoreError: string | undefined;
}

export function newContext(o: MembershipOptions): ClusterContext {
  return {
    o,
    state: "joining",
    settings: undefined,
    lease: undefined,
    backend: undefined,
    backendData: {},
    encryption: undefined,
    podCIDRs: [],
    podMtu: 0,
    lastStoreContact: undefined,
    lastStoreError: undefined,
  };
}

/** The store answered a request of ours. */
export function contact(ctx: ClusterContext): void {
  ctx.lastStoreContact = Date.now();
  ctx.lastStoreError = undefined;
}

export function dualStack(list: readonly string[]): { ipv4?: string; ipv6?: string } {
  const out: { ipv4?: string; ipv6?: string } = {};
  for (const a of list) {
    if (a.includes(":")) out.ipv6 ??= a;
    else out.ipv4 ??= a;
  }
  return out;
}
