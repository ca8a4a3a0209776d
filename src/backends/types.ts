// The one interface every backend implements (modelled on flannel's backend.Backend): how this
// node's pods reach pods on other nodes. The agent leases a pod subnet per node, calls setup()
// once, publishes the returned data with its node lease, and calls syncPeers() with every other
// node's lease whenever the node list changes (and periodically, to repair drift).
import type { KernelContext } from "../kernel/tracked.js";
import type { StoredObject } from "../store/types.js";
import type { IpFamily as Family } from "../net/ip.js";

export type { IpFamily as Family } from "../net/ip.js";

export const BACKEND_NAMES = ["vxlan", "host-gw", "vxlan-direct", "bgp"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** One address per family; either may be absent (single-stack). */
export interface DualStack {
  readonly ipv4?: string;
  readonly ipv6?: string;
}

/** What the backend publishes with the node lease for its peers (e.g. the VTEP MAC). JSON-safe. */
export type BackendData = Readonly<Record<string, string | number | boolean>>;

export interface LocalNode {
  readonly name: string;
  /** The node's underlay (host) addresses; they must be assigned to an interface in the namespace. */
  readonly underlay: DualStack;
  /** The node's leased pod subnets, e.g. { ipv4: "10.244.1.0/24", ipv6: "fd00:244:1::/64" }. */
  readonly podCIDRs: DualStack;
}

export interface PeerNode extends LocalNode {
  /** What the peer's setup() returned, as read from its lease. */
  readonly backendData: BackendData;
  /** The Node's labels, where the store has them (bgp: BGPPeer node selectors). */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface SetupResult {
  /** Publish with the node lease; peers pass it back in PeerNode.backendData. */
  readonly data: BackendData;
  /** MTU for pod interfaces on this node (underlay MTU minus encapsulation, or the override). */
  readonly podMtu: number;
  /** What setup changed in the kernel; empty when the state was already right. */
  readonly changes: readonly Change[];
  /** The backend's own device and its offload state as the kernel reports it (vxlan: the VTEP). */
  readonly device?: DeviceStatus;
}

export interface DeviceStatus {
  readonly name: string;
  /** ethtool feature name -> on; only the features ethtool lists. */
  readonly offloads: Readonly<Record<string, boolean>>;
}

export type ChangeObject = "link" | "address" | "offload" | "route" | "neigh" | "fdb" | "daemon";

export interface Change {
  readonly action: "add" | "replace" | "delete";
  readonly object: ChangeObject;
  /** e.g. "10.244.2.0/24 via 10.244.2.0 dev weft.1 onlink". */
  readonly detail: string;
  /** The peer the change is for; absent for stale entries and the node's own device. */
  readonly peer?: string;
}

/** How traffic to one of a peer's pod subnets leaves this node. */
export type PathKind = "vxlan" | "direct" | "bgp";

export interface PeerStatus {
  readonly name: string;
  /** False when any of the peer's subnets could not be wired; `errors` says why. */
  readonly ok: boolean;
  /** Pod subnet -> path, for each subnet that is wired. */
  readonly paths: Readonly<Record<string, PathKind>>;
  /** Messages a person can act on, for `weft status`. */
  readonly errors: readonly string[];
}

export interface SyncReport {
  readonly peers: readonly PeerStatus[];
  readonly changes: readonly Change[];
  /** Failures not tied to one peer (e.g. removing a stale route failed). */
  readonly errors: readonly string[];
  /** Routing-protocol sessions (bgp: one per peer and underlay family), as the daemon reported them. */
  readonly sessions?: readonly SessionStatus[];
  /** The routing daemon's health (bgp: BIRD), for `weft status`. */
  readonly daemon?: { readonly name: string; readonly ok: boolean; readonly detail: string };
}

export interface SessionStatus {
  readonly peer: string;
  /** The peer's address the session runs to. */
  readonly address: string;
  /** e.g. "Established", "Active", "Connect", "Idle" (BIRD's BGP state). */
  readonly state: string;
  /** When the session entered this state, ISO 8601 (uptime, while Established). */
  readonly since?: string;
  /** Routes learnt from the peer and announced to it. */
  readonly imported?: number;
  readonly exported?: number;
}

export interface SyncOptions {
  /**
   * Diff against what the backend's last complete sync wrote instead of listing the kernel again
   * (for syncs on node events; a sync without it lists the kernel and so repairs drift).
   */
  readonly incremental?: boolean;
}

export interface Backend {
  readonly name: BackendName;
  /** Bytes of encapsulation per packet for an underlay family (0 for host-gw). */
  overhead(underlayFamily: Family): number;
  /**
   * Creates or adopts this node's backend device(s). Idempotent: on a node where the state is
   * already right it changes nothing (a restarted agent keeps working traffic untouched).
   * Throws BackendSetupError when the node cannot run this backend (e.g. no underlay address).
   */
  setup(local: LocalNode): Promise<SetupResult>;
  /**
   * Makes the kernel match exactly `peers` (the local node, if listed, is skipped): adds and
   * corrects what differs, removes what belongs to nodes no longer listed, and changes nothing
   * else. Per-peer problems are reported in the result, never thrown; call setup() first.
   */
  syncPeers(peers: readonly PeerNode[], options?: SyncOptions): Promise<SyncReport>;
  /** Removes everything the backend made (devices, routes, FDB and neighbour entries). */
  teardown(): Promise<void>;
  /**
   * Kinds of store objects the backend renders from (bgp: BGPConfiguration, BGPPeer). The agent
   * watches them, passes every kind's current objects to objectsChanged, then syncs.
   */
  readonly objectKinds?: readonly string[];
  objectsChanged?(kind: string, objects: readonly StoredObject[]): void;
}

export interface VxlanOptions {
  /** VXLAN network identifier; default 1. The device is named weft.<vni>. */
  readonly vni?: number;
  /** UDP destination port; default 4789 (IANA). */
  readonly port?: number;
  /** Which underlay family carries the tunnel when the node has both; default IPv4. */
  readonly underlayFamily?: Family;
  /**
   * Turn tx checksum offload off on the VTEP: works around the kernel bug that corrupted VXLAN
   * checksums in flannel and Calico clusters. Default: off only on kernels before 5.7 (as Calico).
   */
  readonly disableTxChecksumOffload?: boolean;
}

export interface BackendOptions {
  /** Kernel context: namespace to act in (tests, lab) and a hook that sees each command. */
  readonly kernel?: KernelContext;
  /** Pod MTU override (cluster setting); by default derived from the underlay MTU. */
  readonly mtu?: number;
  /** Route protocol number that marks backend routes (default 230); don't share it. */
  readonly routeProtocol?: number;
  readonly vxlan?: VxlanOptions;
  /**
   * A directory the backend may keep files in across agent restarts (the agent's state dir).
   * The bgp backend needs it: BIRD's config, control socket, PID file and log go in DIR/bird.
   */
  readonly stateDir?: string;
  readonly bgp?: BgpOptions;
  /** The cluster CIDRs (bgp: announced prefixes and peer addresses must stay outside them). */
  readonly clusterCIDRs?: readonly string[];
}

export interface BgpOptions {
  /** The cluster's AS number for the iBGP mesh; default 64512 (a private AS, as Calico's). */
  readonly asNumber?: number;
  /** Graceful-restart time announced to peers, seconds; default 120. */
  readonly restartSeconds?: number;
}

export class BackendSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackendSetupError";
  }
}

export const DEFAULT_ROUTE_PROTOCOL = 230;
