// The one interface every encryption implementation (src/encryption/<name>/) implements: how this
// node's pod traffic to other nodes is encrypted, beside (not inside) the backend. The agent calls
// start() once when the cluster's encryption setting names the implementation (and again after a
// restart: it adopts the running daemon), publishes the returned data with its node registration
// under ENCRYPTION_DATA_KEY, and calls sync() with every node whenever the node list changes (and
// periodically, to repair drift). stop() ends it: the daemon and its state stay (agent restart) or
// go (teardown: the setting was switched off, or the node is uninstalled).
//
// Division of work with the backend: the backend keeps wiring its overlay or routes as ever; an
// implementation steers pod traffic to remote pod CIDRs through its own device with a policy
// routing table that is looked up before the main one, so it works over every backend. With
// `strict`, the implementation keeps the shared guard (guard.ts) in place: pod-to-remote-pod
// packets that would leave by any other device are dropped, never sent in clear.
import type { KernelContext } from "../kernel/tracked.js";
import type { IpFamily as Family } from "../net/ip.js";

export type { IpFamily as Family } from "../net/ip.js";

/** The backendData key a node's encryption data is published under (JSON, like "backend"). */
export const ENCRYPTION_DATA_KEY = "encryption";

export const ENCRYPTION_NAMES = ["wireguard", "ipsec"] as const;
export type EncryptionName = (typeof ENCRYPTION_NAMES)[number];

/** One address per family; either may be absent (single-stack). */
export interface DualStack {
  readonly ipv4?: string;
  readonly ipv6?: string;
}

export interface EncryptionLocal {
  readonly name: string;
  /** The node's underlay addresses: encrypted packets travel between these. */
  readonly underlay: DualStack;
  /** The node's own pod subnets. */
  readonly podCIDRs: DualStack;
  /** The cluster CIDRs: the strict guard covers every remote pod address in them. */
  readonly clusterCIDRs: readonly string[];
}

/** What an implementation publishes for its peers (public key, port, ...). JSON-safe, small. */
export type EncryptionData = Readonly<Record<string, string | number | boolean>>;

export interface EncryptionPeer {
  readonly name: string;
  readonly underlay: DualStack;
  readonly podCIDRs: DualStack;
  /**
   * What the peer's start() returned, as read from its registration; undefined while it has not
   * published yet (a joining node). With strict, traffic to such a peer is dropped, never sent in clear.
   */
  readonly data: EncryptionData | undefined;
}

export interface EncryptionOptions {
  /** The agent's state dir: keys and daemon files go under it (private keys 0600, never logged). */
  readonly stateDir: string;
  /** Kernel context: the node's namespace (tests, the lab) and the command hook. */
  readonly kernel?: KernelContext;
  /** Drop pod traffic to remote nodes that cannot be encrypted (default true). */
  readonly strict?: boolean;
  /** Encrypt traffic between the nodes' underlay addresses too. */
  readonly nodeToNode?: boolean;
}

export type EncryptionChangeObject = "key" | "daemon" | "peer" | "route" | "rule" | "guard" | "link";

export interface EncryptionChange {
  readonly action: "add" | "replace" | "delete";
  readonly object: EncryptionChangeObject;
  /** e.g. "peer n2 key 3q2+7w... allowed 10.244.2.0/24"; never a private key. */
  readonly detail: string;
  readonly peer?: string;
}

export interface StartResult {
  /** Publish under ENCRYPTION_DATA_KEY; peers pass it back in EncryptionPeer.data. */
  readonly data: EncryptionData;
  /** The device pod traffic to remote nodes leaves by (wg: "wft-<node>"; ipsec: its TUN device). */
  readonly device: string;
  /** The largest pod MTU the device carries (underlay MTU minus the overhead): the pod MTU's ceiling. */
  readonly podMtu: number;
  /** Whether a running daemon was adopted (agent restart) rather than started. */
  readonly adopted: boolean;
  readonly changes: readonly EncryptionChange[];
}

export interface PeerEncryptionStatus {
  readonly name: string;
  readonly type: EncryptionName;
  /** False when traffic to the peer cannot be encrypted now (no key yet, bad data): it is dropped (strict). */
  readonly ok: boolean;
  /** The peer's published identity (WireGuard public key; IPsec: its IKE identity). */
  readonly identity?: string;
  /** When this node first saw the peer's current key/SA (ISO 8601), for the key age. */
  readonly keySince?: string;
  /** Last successful handshake (WireGuard) or SA establishment/rekey (IPsec), ISO 8601. */
  readonly lastHandshake?: string;
  readonly rxBytes?: number;
  readonly txBytes?: number;
  /** Messages a person can act on, e.g. "has not published a WireGuard key yet: traffic to it is dropped". */
  readonly errors: readonly string[];
}

export interface EncryptionStatus {
  readonly type: EncryptionName;
  /** e.g. "wireguard-go 0.0.2023 (userspace; no kernel WireGuard)", "charon kernel-libipsec". */
  readonly implementation: string;
  readonly device: string;
  /** Daemon process id, when a daemon runs. */
  readonly pid?: number;
  /** This node's identity (public key) and when it was made, ISO 8601. */
  readonly identity?: string;
  readonly keyCreatedAt?: string;
  readonly strict: boolean;
  readonly peers: readonly PeerEncryptionStatus[];
  /** Problems not tied to one peer (daemon down, guard missing). */
  readonly errors: readonly string[];
}

export interface SyncResult {
  readonly status: EncryptionStatus;
  readonly changes: readonly EncryptionChange[];
}

export interface Encryption {
  readonly name: EncryptionName;
  /** Bytes the encryption adds per packet for an underlay family (the pod MTU subtracts it). */
  overhead(underlayFamily: Family): number;
  /**
   * Makes or loads the node's identity (keys), starts or adopts the daemon, sets up the device,
   * the routing table and (strict) the guard. Idempotent; a restarted agent disturbs no traffic.
   * Throws EncryptionError when the node cannot run it (tool missing, no underlay address).
   */
  start(local: EncryptionLocal): Promise<StartResult>;
  /**
   * Makes the peer state match exactly `peers` (the local node, if listed, is skipped): adds,
   * corrects, removes. Per-peer problems (no key yet, invalid key) are in the status, never thrown.
   */
  sync(peers: readonly EncryptionPeer[]): Promise<SyncResult>;
  status(): Promise<EncryptionStatus>;
  /**
   * teardown false: leave the daemon and the kernel state running (agent restart; traffic flows).
   * teardown true: remove the daemon, device, routes and guard (encryption switched off, uninstall).
   */
  stop(options: { teardown: boolean }): Promise<void>;
}

export type EncryptionFactory = (options: EncryptionOptions) => Encryption;

/** The node cannot run the encryption (missing tool, no underlay address, daemon did not start). */
export class EncryptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EncryptionError";
  }
}
