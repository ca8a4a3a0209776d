// The small etcd-shaped key-value contract that both the local (SQLite) and the etcd store implement.
// Everything above it (settings, node leases, subnet CAS, objects, watches) is written once, in
// kvstore.ts, so the two implementations cannot drift apart in semantics.

export interface KvEntry {
  key: string;
  value: string;
  /** Store revision of the last write to this key (> 0). */
  modRevision: number;
}

/** Guard of a transaction: the key's modRevision must equal this (0 = the key must not exist). */
export interface KvCompare {
  key: string;
  modRevision: number;
}

export type KvOp = { type: "put"; key: string; value: string; lease?: string } | { type: "delete"; key: string };

export interface KvLease {
  readonly id: string;
  /** Called once if the lease dies (expired while the store was unreachable, or revoked elsewhere). */
  onLost(listener: (err: Error) => void): void;
  /** Ends the lease now: its keys are deleted. */
  revoke(): Promise<void>;
  /** Stops renewing without revoking: the lease expires by TTL. */
  release(): void;
}

export interface KvWatchEvent {
  type: "put" | "delete";
  key: string;
  /** The new value (put only). */
  value?: string;
  modRevision: number;
}

export interface KvWatchHandlers {
  /** Events in revision order, possibly batched. */
  onEvents(events: KvWatchEvent[]): void;
  /** The history after the requested revision is gone (compacted): the caller must re-list. */
  onReset(): void;
}

export interface KvBackend {
  readonly description: string;
  get(key: string): Promise<KvEntry | undefined>;
  /** All keys starting with prefix, in key order, with the revision the listing reflects. */
  list(prefix: string): Promise<{ entries: KvEntry[]; revision: number }>;
  /** Applies ops atomically if every compare holds. */
  txn(compares: KvCompare[], ops: KvOp[]): Promise<{ succeeded: boolean; revision: number }>;
  /** A lease renewed by the backend until released or revoked. */
  grantLease(ttlSeconds: number): Promise<KvLease>;
  /** Watches keys under prefix for changes after afterRevision; reconnects by itself. */
  watch(prefix: string, afterRevision: number, handlers: KvWatchHandlers): { cancel(): Promise<void> };
  close(): Promise<void>;
}
