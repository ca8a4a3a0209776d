// KvBackend on SQLite (better-sqlite3, WAL, synchronous=FULL): an embedded, crash-safe, etcd-shaped
// key-value store for a single host. It keeps etcd's model so kvstore.ts works unchanged:
//   - one global revision, bumped by every write transaction; each key remembers its mod revision;
//   - leases with a TTL and an expiry time; a sweeper (in every process that has the file open)
//     deletes the keys of expired leases;
//   - an event log (the revision history) that watchers read from; writes in this process wake them
//     at once, writes by other processes are noticed by polling PRAGMA data_version (cheap).
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { UnavailableError, InvalidError } from "../errors.js";
import type { KvBackend, KvCompare, KvEntry, KvLease, KvOp, KvWatchEvent, KvWatchHandlers } from "../kv.js";

type Db = Database.Database;

export interface SqliteKvOptions {
  /** How often expired leases are swept and other processes' writes are looked for. Default 100 ms. */
  pollIntervalMs?: number;
  /** Events kept for watchers to resume from. Default 10000. */
  historyLimit?: number;
  /** How often old events are trimmed. Default 30 s. */
  compactIntervalMs?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, n) VALUES ('revision', 0), ('compacted_event', 0);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, mod_rev INTEGER NOT NULL, lease INTEGER);
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY AUTOINCREMENT, ttl_ms INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, rev INTEGER NOT NULL, k TEXT NOT NULL, type TEXT NOT NULL, v TEXT);
`;

interface Watcher {
  prefix: string;
  cursor: number;
  handlers: KvWatchHandlers;
  dead: boolean;
}

export class SqliteKv implements KvBackend {
  readonly description: string;
  private readonly db: Db;
  private closed = false;
  private readonly watchers = new Set<Watcher>();
  private readonly leaseTimers = new Map<number, { timer: NodeJS.Timeout; lost: Array<(e: Error) => void> }>();
  private readonly poller: NodeJS.Timeout;
  private dataVersion = -1;
  private pumpQueued = false;
  private lastCompaction = Date.now();
  private readonly historyLimit: number;
  private readonly compactIntervalMs: number;

  constructor(
    readonly path: string,
    options: SqliteKvOptions = {},
  ) {
    this.description = `local store ${path}`;
    this.historyLimit = options.historyLimit ?? 10000;
    this.compactIntervalMs = options.compactIntervalMs ?? 30_000;
    try {
      mkdirSync(dirname(path), { recursive: true });
      this.db = new Database(path);
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = FULL");
      this.db.pragma("busy_timeout = 5000");
      this.db.exec(SCHEMA);
    } catch (err) {
      throw new UnavailableError(
        `cannot open the local store ${path}: ${(err as Error).message} (check that the state directory exists and is writable)`,
        err,
      );
    }
    this.poller = setInterval(() => this.tick(), options.pollIntervalMs ?? 100);
    this.poller.unref();
  }

  private guard<T>(fn: () => T): T {
    if (this.closed) throw new UnavailableError(`${this.description} is closed`);
    try {
      return fn();
    } catch (err) {
      if (err instanceof Database.SqliteError) {
        const busy = err.code.startsWith("SQLITE_BUSY") || err.code.startsWith("SQLITE_LOCKED");
        throw new UnavailableError(
          busy
            ? `${this.description} stayed locked by another process for 5 s: is a stuck weft process holding it?`
            : `${this.description} failed: ${err.message} (${err.code})`,
          err,
        );
      }
      throw err;
    }
  }

  private revision(): number {
    return (this.db.prepare("SELECT n FROM meta WHERE name = 'revision'").get() as { n: number }).n;
  }

  private bump(): number {
    return (this.db.prepare("UPDATE meta SET n = n + 1 WHERE name = 'revision' RETURNING n").get() as { n: number }).n;
  }

  // Keys of leases that expired but were not swept yet are already invisible to readers.
  private static readonly LIVE =
    "(kv.lease IS NULL OR EXISTS (SELECT 1 FROM leases l WHERE l.id = kv.lease AND l.expires_at >= ?))";

  async get(key: string): Promise<KvEntry | undefined> {
    return this.guard(() => {
      const row = this.db
        .prepare(`SELECT k, v, mod_rev FROM kv WHERE k = ? AND ${SqliteKv.LIVE}`)
        .get(key, Date.now()) as { k: string; v: string; mod_rev: number } | undefined;
      return row ? { key: row.k, value: row.v, modRevision: row.mod_rev } : undefined;
    });
  }

  async list(prefix: string): Promise<{ entries: KvEntry[]; revision: number }> {
    return this.guard(() =>
      this.db.transaction(() => {
        const rows = this.db
          .prepare(`SELECT k, v, mod_rev FROM kv WHERE substr(k, 1, ?) = ? AND ${SqliteKv.LIVE} ORDER BY k`)
          .all(prefix.length, prefix, Date.now()) as Array<{ k: string; v: string; mod_rev: number }>;
        return {
          entries: rows.map((r) => ({ key: r.k, value: r.v, modRevision: r.mod_rev })),
          revision: this.revision(),
        };
      })(),
    );
  }

  async txn(compares: KvCompare[], ops: KvOp[]): Promise<{ succeeded: boolean; revision: number }> {
    const result = this.guard(() =>
      this.db
        .transaction(() => {
          const now = Date.now();
          this.sweepIn(now);
          for (const c of compares) {
            const row = this.db.prepare("SELECT mod_rev FROM kv WHERE k = ?").get(c.key) as
              { mod_rev: number } | undefined;
            if ((row?.mod_rev ?? 0) !== c.modRevision) return { succeeded: false, revision: this.revision() };
          }
          for (const op of ops) {
            if (op.type === "put" && op.lease !== undefined) {
              const alive = this.db
                .prepare("SELECT 1 FROM leases WHERE id = ? AND expires_at >= ?")
                .get(Number(op.lease), now);
              if (!alive) throw new InvalidError(`lease ${op.lease} has expired or was revoked`);
            }
          }
          const rev = this.bump();
          for (const op of ops) this.apply(rev, op);
          return { succeeded: true, revision: rev };
        })
        .immediate(),
    );
    if (result.succeeded) this.schedulePump();
    return result;
  }

  private apply(rev: number, op: KvOp): void {
    if (op.type === "put") {
      this.db
        .prepare(
          "INSERT INTO kv (k, v, mod_rev, lease) VALUES (?, ?, ?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v, mod_rev = excluded.mod_rev, lease = excluded.lease",
        )
        .run(op.key, op.value, rev, op.lease === undefined ? null : Number(op.lease));
      this.db.prepare("INSERT INTO events (rev, k, type, v) VALUES (?, ?, 'put', ?)").run(rev, op.key, op.value);
    } else {
      const gone = this.db.prepare("DELETE FROM kv WHERE k = ?").run(op.key);
      if (gone.changes > 0)
        this.db.prepare("INSERT INTO events (rev, k, type, v) VALUES (?, ?, 'delete', NULL)").run(rev, op.key);
    }
  }

  /** Deletes expired leases and their keys (inside a write transaction). Returns whether anything changed. */
  private sweepIn(now: number): boolean {
    const expired = this.db.prepare("SELECT id FROM leases WHERE expires_at < ?").all(now) as Array<{ id: number }>;
    if (expired.length === 0) return false;
    let rev = 0;
    for (const { id } of expired) {
      const keys = this.db.prepare("SELECT k FROM kv WHERE lease = ?").all(id) as Array<{ k: string }>;
      for (const { k } of keys) {
        if (rev === 0) rev = this.bump();
        this.apply(rev, { type: "delete", key: k });
      }
      this.db.prepare("DELETE FROM leases WHERE id = ?").run(id);
    }
    return rev !== 0;
  }

  async grantLease(ttlSeconds: number): Promise<KvLease> {
    const ttlMs = ttlSeconds * 1000;
    const id = this.guard(
      () =>
        (
          this.db
            .prepare("INSERT INTO leases (ttl_ms, expires_at) VALUES (?, ?) RETURNING id")
            .get(ttlMs, Date.now() + ttlMs) as { id: number }
        ).id,
    );
    const entry = { timer: setInterval(() => this.renew(id, ttlMs), ttlMs / 3), lost: [] as Array<(e: Error) => void> };
    entry.timer.unref();
    this.leaseTimers.set(id, entry);
    return {
      id: String(id),
      onLost: (l) => entry.lost.push(l),
      revoke: async () => {
        this.stopLease(id);
        this.guard(() =>
          this.db
            .transaction(() => {
              const keys = this.db.prepare("SELECT k FROM kv WHERE lease = ?").all(id) as Array<{ k: string }>;
              if (keys.length > 0) {
                const rev = this.bump();
                for (const { k } of keys) this.apply(rev, { type: "delete", key: k });
              }
              this.db.prepare("DELETE FROM leases WHERE id = ?").run(id);
            })
            .immediate(),
        );
        this.schedulePump();
      },
      release: () => this.stopLease(id),
    };
  }

  private stopLease(id: number): void {
    const e = this.leaseTimers.get(id);
    if (e) clearInterval(e.timer);
    this.leaseTimers.delete(id);
  }

  private renew(id: number, ttlMs: number): void {
    if (this.closed) return;
    let alive: boolean;
    try {
      const now = Date.now();
      alive =
        this.db.prepare("UPDATE leases SET expires_at = ? WHERE id = ? AND expires_at >= ?").run(now + ttlMs, id, now)
          .changes > 0;
    } catch {
      return; // locked for a moment: the next renewal (ttl/3 later) tries again
    }
    if (!alive) {
      const e = this.leaseTimers.get(id);
      this.stopLease(id);
      const err = new UnavailableError(
        `lease ${id} in ${this.description} expired before it could be renewed (was this process stopped for longer than the TTL?)`,
      );
      for (const l of e?.lost ?? []) l(err);
    }
  }

  watch(prefix: string, afterRevision: number, handlers: KvWatchHandlers): { cancel(): Promise<void> } {
    const w: Watcher = { prefix, cursor: 0, handlers, dead: false };
    try {
      this.guard(() => {
        const compacted = (this.db.prepare("SELECT n FROM meta WHERE name = 'compacted_event'").get() as { n: number })
          .n;
        const row = this.db
          .prepare("SELECT COALESCE(MAX(id), 0) AS id FROM events WHERE rev <= ?")
          .get(afterRevision) as { id: number };
        w.cursor = row.id;
        if (w.cursor < compacted) w.cursor = -1; // history gone: reset below
      });
    } catch {
      w.cursor = -1;
    }
    this.watchers.add(w);
    this.poller.ref(); // a live watch keeps the process running, as an etcd watch stream does
    if (w.cursor < 0) {
      setImmediate(() => this.reset(w));
    } else {
      this.schedulePump();
    }
    return {
      cancel: async () => {
        w.dead = true;
        this.watchers.delete(w);
        if (this.watchers.size === 0) this.poller.unref();
      },
    };
  }

  private reset(w: Watcher): void {
    if (w.dead) return;
    w.dead = true;
    this.watchers.delete(w);
    if (this.watchers.size === 0) this.poller.unref();
    w.handlers.onReset();
  }

  private schedulePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.closed || this.watchers.size === 0) return;
    let compacted: number;
    try {
      compacted = (this.db.prepare("SELECT n FROM meta WHERE name = 'compacted_event'").get() as { n: number }).n;
    } catch {
      return;
    }
    const stmt = this.db.prepare(
      "SELECT id, rev, k, type, v FROM events WHERE id > ? AND substr(k, 1, ?) = ? ORDER BY id",
    );
    const maxId = (this.db.prepare("SELECT COALESCE(MAX(id), 0) AS id FROM events").get() as { id: number }).id;
    for (const w of [...this.watchers]) {
      if (w.dead) continue;
      if (w.cursor < compacted) {
        this.reset(w);
        continue;
      }
      const rows = stmt.all(w.cursor, w.prefix.length, w.prefix) as Array<{
        id: number;
        rev: number;
        k: string;
        type: string;
        v: string | null;
      }>;
      // Each query is its own snapshot and may see events newer than maxId.
      w.cursor = Math.max(w.cursor, maxId, rows.length ? rows[rows.length - 1].id : 0);
      if (rows.length === 0) continue;
      const events: KvWatchEvent[] = rows.map((r) => ({
        type: r.type === "put" ? "put" : "delete",
        key: r.k,
        ...(r.v !== null ? { value: r.v } : {}),
        modRevision: r.rev,
      }));
      w.handlers.onEvents(events);
    }
  }

  /** Periodic work: sweep expired leases, notice other processes' writes, trim history. */
  private tick(): void {
    if (this.closed) return;
    try {
      const now = Date.now();
      const due = this.db.prepare("SELECT 1 FROM leases WHERE expires_at < ? LIMIT 1").get(now);
      if (due && this.db.transaction(() => this.sweepIn(Date.now())).immediate()) this.schedulePump();
      const dv = this.db.pragma("data_version", { simple: true }) as number;
      if (dv !== this.dataVersion) {
        this.dataVersion = dv;
        this.schedulePump();
      }
      if (now - this.lastCompaction >= this.compactIntervalMs) {
        this.lastCompaction = now;
        this.compact();
      }
    } catch {
      // Locked by another process right now: try again on the next tick.
    }
  }

  private compact(): void {
    this.db
      .transaction(() => {
        const maxId = (this.db.prepare("SELECT COALESCE(MAX(id), 0) AS id FROM events").get() as { id: number }).id;
        const upTo = maxId - this.historyLimit;
        if (upTo <= 0) return;
        this.db.prepare("DELETE FROM events WHERE id <= ?").run(upTo);
        this.db.prepare("UPDATE meta SET n = MAX(n, ?) WHERE name = 'compacted_event'").run(upTo);
      })
      .immediate();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.poller);
    for (const id of [...this.leaseTimers.keys()]) this.stopLease(id);
    for (const w of this.watchers) w.dead = true;
    this.watchers.clear();
    this.db.close();
  }
}
