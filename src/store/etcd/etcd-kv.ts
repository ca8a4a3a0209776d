// KvBackend on etcd v3 (npm `etcd3`): leases with keepalive, transactions for compare-and-swap,
// watches that resume from the last revision seen. Every client error becomes an UnavailableError
// that names the endpoints, so the agent and CLI can tell the user what to check.
import etcd3 from "etcd3";
import type { IKeyValue, Watcher } from "etcd3";
import { UnavailableError } from "../errors.js";
import { grpcHost, readTlsFiles, type EtcdConnection } from "./config.js";
import type { KvBackend, KvCompare, KvEntry, KvLease, KvOp, KvWatchEvent, KvWatchHandlers } from "../kv.js";

const {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  EtcdUserNotFoundError,
} = etcd3;
type Client = InstanceType<typeof Etcd3>;

export interface EtcdKvOptions extends EtcdConnection {
  /** Deadline of each unary call (range, txn, lease grant/revoke). Default 5000 ms. */
  requestTimeoutMs?: number;
  /** Deadline for connecting to a member. Default 2000 ms. */
  dialTimeoutMs?: number;
}

/** A capped exponential backoff for watch reconnects (etcd3's default waits up to 30 s). */
function backoff(duration: number, max: number): { duration: number; next(): ReturnType<typeof backoff> } {
  return { duration, next: () => backoff(Math.min(duration * 2, max), max) };
}

const prefixEnd = (prefix: Buffer): Buffer => {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the keyspace
};

export class EtcdKv implements KvBackend {
  readonly description: string;
  readonly client: Client;

  constructor(readonly options: EtcdKvOptions) {
    if (options.endpoints.length === 0)
      throw new UnavailableError("no etcd endpoints given: pass --etcd-endpoints http://HOST:2379[,...]");
    this.description = `etcd at ${options.endpoints.join(",")}`;
    const timeout = options.requestTimeoutMs ?? 5000;
    this.client = new Etcd3({
      hosts: options.endpoints.map(grpcHost),
      // TLS on every endpoint when a CA is given (config.ts refuses mixed endpoints).
      ...(options.tls ? { credentials: readTlsFiles(options.tls) } : {}),
      ...(options.auth ? { auth: { username: options.auth.username, password: options.auth.password.reveal() } } : {}),
      dialTimeout: options.dialTimeoutMs ?? 2000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      faultHandling: { watchBackoff: backoff(50, 2000) },
    });
  }

  private unavailable(err: unknown): UnavailableError {
    if (err instanceof UnavailableError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    return new UnavailableError(`${this.description} is unavailable (${msg}): ${this.hint(err)}`, err);
  }

  /** What to check, from the kind of failure: refused credentials are not an outage. */
  private hint(err: unknown): string {
    if (err instanceof EtcdAuthenticationFailedError || err instanceof EtcdInvalidAuthTokenError)
      return "etcd refused the username or password (--etcd-username, --etcd-password-file)";
    if (err instanceof EtcdPermissionDeniedError || err instanceof EtcdUserNotFoundError)
      return "etcd refused this user (check its role, or --etcd-username)";
    if (err instanceof Error && /user name is empty/.test(err.message))
      return "etcd has authentication on: give --etcd-username with --etcd-password-file (or $WEFT_ETCD_PASSWORD)";
    if (this.options.tls)
      return "check that etcd is running and reachable, that --etcd-endpoints is right, and that --etcd-cafile/--etcd-certfile/--etcd-keyfile match etcd's certificates";
    return "check that etcd is running and reachable, and that --etcd-endpoints is right";
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  private entry(kv: IKeyValue): KvEntry {
    return { key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) };
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const res = await this.call(() => this.client.kv.range({ key: Buffer.from(key) }));
    return res.kvs.length > 0 ? this.entry(res.kvs[0]) : undefined;
  }

  async list(prefix: string): Promise<{ entries: KvEntry[]; revision: number }> {
    const p = Buffer.from(prefix);
    const res = await this.call(() =>
      this.client.kv.range({ key: p, range_end: prefixEnd(p), sort_target: "Key", sort_order: "Ascend" }),
    );
    return { entries: res.kvs.map((kv) => this.entry(kv)), revision: Number(res.header.revision) };
  }

  async txn(compares: KvCompare[], ops: KvOp[]): Promise<{ succeeded: boolean; revision: number }> {
    const res = await this.call(() =>
      this.client.kv.txn({
        compare: compares.map((c) => ({
          key: Buffer.from(c.key),
          target: "Mod",
          result: "Equal",
          mod_revision: c.modRevision,
        })),
        success: ops.map((op) =>
          op.type === "put"
            ? {
                request_put: {
                  key: Buffer.from(op.key),
                  value: Buffer.from(op.value),
                  ...(op.lease !== undefined ? { lease: op.lease } : {}),
                },
              }
            : { request_delete_range: { key: Buffer.from(op.key) } },
        ),
      }),
    );
    return { succeeded: res.succeeded, revision: Number(res.header.revision) };
  }

  // Renewals are done here rather than with etcd3's autoKeepAlive: its keepalive timer re-arms
  // itself after release() (keeping the process alive for a whole TTL) and its streams carry no
  // deadline, so a dead member could stall a renewal forever.
  async grantLease(ttlSeconds: number): Promise<KvLease> {
    const granted = await this.call(() => this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }));
    const id = String(granted.ID);
    const lost: Array<(e: Error) => void> = [];
    let stopped = false;
    let inflight = false;
    let lastRenewal = Date.now();
    const die = (err: Error): void => {
      if (stopped) return;
      stop();
      for (const l of lost) l(err);
    };
    const renew = async (): Promise<void> => {
      if (stopped || inflight) return;
      inflight = true;
      try {
        const res = await this.keepaliveOnce(id, Math.max(500, (ttlSeconds * 1000) / 3));
        if (Number(res.TTL) <= 0)
          die(new UnavailableError(`lease ${id} in ${this.description} expired before it could be renewed`));
        else lastRenewal = Date.now();
      } catch (err) {
        // etcd extends leases when a new leader takes over, so the lease may outlive one TTL of outage.
        if (Date.now() - lastRenewal > 2 * ttlSeconds * 1000) die(this.unavailable(err));
      } finally {
        inflight = false;
      }
    };
    const timer = setInterval(() => void renew(), (ttlSeconds * 1000) / 3);
    const stop = (): void => {
      stopped = true;
      clearInterval(timer);
    };
    return {
      id,
      onLost: (l) => lost.push(l),
      revoke: async () => {
        stop();
        await this.call(() => this.client.leaseClient.leaseRevoke({ ID: id }));
      },
      release: stop,
    };
  }

  private async keepaliveOnce(id: string, timeoutMs: number): Promise<{ TTL: string }> {
    const stream = await this.client.leaseClient.leaseKeepAlive({ deadline: Date.now() + timeoutMs });
    try {
      return await new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on("data", (res: { TTL: string }) => resolve(res));
        stream.on("error", reject);
        stream.on("end", () => reject(new Error("keepalive stream ended")));
        stream.write({ ID: id });
      });
    } finally {
      stream.end();
    }
  }

  watch(prefix: string, afterRevision: number, handlers: KvWatchHandlers): { cancel(): Promise<void> } {
    const p = Buffer.from(prefix);
    let last = afterRevision;
    let cancelled = false;
    const watcher: Watcher = this.client
      .watch()
      .inRange({ start: p, end: prefixEnd(p) })
      .startRevision(String(afterRevision + 1))
      .watcher();
    // etcd3 resumes a reconnecting watch after the header revision of the last response, which can
    // skip events still being caught up; resume after the last event actually delivered instead.
    const pin = (): void => {
      watcher.request.start_revision = String(last + 1);
    };
    watcher.on("connected", pin);
    watcher.on("data", (res) => {
      const events: KvWatchEvent[] = res.events.map((ev) => ({
        type: ev.type === "Put" ? "put" : "delete",
        key: ev.kv.key.toString(),
        ...(ev.type === "Put" ? { value: ev.kv.value.toString() } : {}),
        modRevision: Number(ev.kv.mod_revision),
      }));
      for (const e of events) last = Math.max(last, e.modRevision);
      pin();
      if (!cancelled && events.length > 0) handlers.onEvents(events);
    });
    // "error" = etcd cancelled the watch (typically: the revision was compacted): re-list.
    watcher.on("error", () => {
      if (cancelled) return;
      cancelled = true;
      void watcher.cancel().catch(() => undefined);
      handlers.onReset();
    });
    watcher.on("disconnected", () => undefined); // etcd3 reconnects by itself (watchBackoff above)
    return {
      cancel: async () => {
        cancelled = true;
        await watcher.cancel().catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
