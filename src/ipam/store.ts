// The node's allocation records in SQLite (WAL, synchronous=NORMAL): one row per pod attachment,
// one per address. A record is written in state 'adding' before any kernel work and flipped to
// 'ready' when the pod is wired, so after a crash the agent knows which pods were half-made.
// SQLite's transactions make "never give an address twice" hold across concurrent ADDs and crashes.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { familyBits, formatIp, ipOrThrow, type IpFamily as Family } from "../net/ip.js";
import { type Pool } from "./pool.js";
import { nextFree } from "./allocator.js";

export type AttachmentState = "adding" | "ready";

export interface AttachmentKey {
  network: string;
  containerId: string;
  ifname: string;
}

export interface AllocatedAddress {
  family: Family;
  /** Canonical address text, no prefix. */
  address: string;
  /** Prefix length the pod gets (32 / 128 in the routed design). */
  prefix: number;
}

export interface AttachmentRecord extends AttachmentKey {
  netns: string;
  hostIf: string;
  state: AttachmentState;
  delegated: boolean;
  mtu: number;
  hostMac: string;
  podMac: string;
  addresses: AllocatedAddress[];
  /** Families whose default route in the pod goes via this interface (set when ready). */
  defaultRoutes: Family[];
  /** The Kubernetes pod (K8S_POD_NAMESPACE/K8S_POD_NAME) the attachment belongs to, if the runtime said. */
  pod?: PodRef;
}

export interface PodRef {
  namespace: string;
  name: string;
}

export class IpamError extends Error {
  constructor(
    message: string,
    readonly kind: "exists" | "exhausted" | "conflict",
  ) {
    super(message);
    this.name = "IpamError";
  }
}

export interface ReserveRequest extends AttachmentKey {
  netns: string;
  hostIf: string;
  mtu: number;
  hostMac: string;
  podMac: string;
  /** Weft's own pools to allocate from (one address each), or null when `delegated` is given. */
  pools: Pool[] | null;
  /** Addresses chosen by a delegated IPAM plugin: recorded, never allocated by weft. */
  delegated?: AllocatedAddress[];
  pod?: PodRef;
}

interface AttachmentRow {
  network: string;
  container_id: string;
  ifname: string;
  netns: string;
  host_if: string;
  state: AttachmentState;
  delegated: number;
  mtu: number;
  host_mac: string;
  pod_mac: string;
  default_routes: string;
  pod_namespace: string | null;
  pod_name: string | null;
}

interface AddressRow {
  address: string;
  family: number;
  prefix: number;
  network: string;
  container_id: string;
  ifname: string;
}

export class IpamStore {
  private readonly db: Database.Database;

  constructor(stateDir: string) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.db = new Database(join(stateDir, "ipam.db"));
    this.db.pragma("journal_mode = WAL");
    // NORMAL in WAL mode: every commit is in the WAL file (the OS has it) before the call returns, so a
    // killed agent loses nothing. Only a power loss can drop the last commits, and that also
    // removes every pod namespace and veth they describe (the runtime re-ADDs after a reboot).
    // FULL would fsync twice per ADD and block the event loop for it.
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS attachments (
        network TEXT NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL,
        netns TEXT NOT NULL, host_if TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('adding', 'ready')),
        delegated INTEGER NOT NULL, mtu INTEGER NOT NULL, host_mac TEXT NOT NULL, pod_mac TEXT NOT NULL,
        default_routes TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (network, container_id, ifname)
      );
      CREATE TABLE IF NOT EXISTS addresses (
        address TEXT PRIMARY KEY, family INTEGER NOT NULL, prefix INTEGER NOT NULL,
        network TEXT NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL,
        FOREIGN KEY (network, container_id, ifname) REFERENCES attachments (network, container_id, ifname) ON DELETE CASCADE
      );
      CREATE INDEX IF NOT EXISTS addresses_owner ON addresses (network, container_id, ifname);
      -- Per pool, the last address handed out: allocation continues after it.
      CREATE TABLE IF NOT EXISTS cursors (pool TEXT PRIMARY KEY, last TEXT NOT NULL);
    `);
    // Schema 2: the pod's namespace/name, so a restarted agent knows every wired pod's identity
    // (network policy). State dirs from before get the columns empty (pods named by container ID).
    const cols = (this.db.prepare("PRAGMA table_info(attachments)").all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes("pod_namespace")) {
      try {
        this.db.transaction(() => {
          this.db.exec(
            "ALTER TABLE attachments ADD COLUMN pod_namespace TEXT; ALTER TABLE attachments ADD COLUMN pod_name TEXT;",
          );
        })();
      } catch (e) {
        // Another process (ipam check, a second open) migrated it first.
        if (!/duplicate column/.test(String(e))) throw e;
      }
    }
  }

  close(): void {
    this.db.close();
  }

  /** Writes the attachment in state 'adding' with its addresses, atomically. */
  reserve(req: ReserveRequest): AttachmentRecord {
    const tx = this.db.transaction((): AllocatedAddress[] => {
      const existing = this.db
        .prepare("SELECT network FROM attachments WHERE container_id = ? AND ifname = ?")
        .get(req.containerId, req.ifname) as { network: string } | undefined;
      if (existing) {
        throw new IpamError(
          `container ${req.containerId} already has an attachment on interface ${req.ifname} (network ${existing.network})`,
          "exists",
        );
      }
      const clash = this.db
        .prepare("SELECT container_id, ifname FROM attachments WHERE host_if = ?")
        .get(req.hostIf) as { container_id: string; ifname: string } | undefined;
      if (clash) {
        throw new IpamError(
          `host interface name ${req.hostIf} is taken by container ${clash.container_id} interface ${clash.ifname}`,
          "exists",
        );
      }
      this.db
        .prepare(
          `INSERT INTO attachments (network, container_id, ifname, netns, host_if, state, delegated, mtu, host_mac, pod_mac, pod_namespace, pod_name)
           VALUES (?, ?, ?, ?, ?, 'adding', ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          req.network,
          req.containerId,
          req.ifname,
          req.netns,
          req.hostIf,
          req.pools ? 0 : 1,
          req.mtu,
          req.hostMac,
          req.podMac,
          req.pod?.namespace ?? null,
          req.pod?.name ?? null,
        );
      const insertAddr = this.db.prepare(
        "INSERT INTO addresses (address, family, prefix, network, container_id, ifname) VALUES (?, ?, ?, ?, ?, ?)",
      );
      const isUsed = this.db.prepare("SELECT 1 FROM addresses WHERE address = ?").pluck();
      const out: AllocatedAddress[] = [];
      if (req.pools) {
        for (const pool of req.pools) {
          const cur = this.db.prepare("SELECT last FROM cursors WHERE pool = ?").pluck().get(pool.cidr) as
            string | undefined;
          const last = cur === undefined ? null : ipOrThrow(cur).value;
          const v = nextFree(pool, last, (x) => isUsed.get(formatIp(pool.family, x)) !== undefined);
          if (v === null) throw new IpamError(`no free address left in ${pool.cidr}`, "exhausted");
          const address = formatIp(pool.family, v);
          this.db
            .prepare(
              "INSERT INTO cursors (pool, last) VALUES (?, ?) ON CONFLICT (pool) DO UPDATE SET last = excluded.last",
            )
            .run(pool.cidr, address);
          out.push({ family: pool.family, address, prefix: familyBits(pool.family) });
        }
      } else {
        out.push(...(req.delegated ?? []));
      }
      for (const a of out) {
        if (isUsed.get(a.address) !== undefined) {
          throw new IpamError(`address ${a.address} is already in use on this node`, "conflict");
        }
        insertAddr.run(a.address, a.family, a.prefix, req.network, req.containerId, req.ifname);
      }
      return out;
    });
    const addresses = tx();
    return { ...req, state: "adding", delegated: !req.pools, addresses, defaultRoutes: [] };
  }

  markReady(key: AttachmentKey, defaultRoutes: Family[]): void {
    this.db
      .prepare(
        "UPDATE attachments SET state = 'ready', default_routes = ? WHERE network = ? AND container_id = ? AND ifname = ?",
      )
      .run(defaultRoutes.join(","), key.network, key.containerId, key.ifname);
  }

  /** Removes the attachment and its addresses. Returns whether there was one. */
  release(key: AttachmentKey): boolean {
    const r = this.db
      .prepare("DELETE FROM attachments WHERE network = ? AND container_id = ? AND ifname = ?")
      .run(key.network, key.containerId, key.ifname);
    return r.changes > 0;
  }

  get(key: AttachmentKey): AttachmentRecord | undefined {
    const row = this.db
      .prepare("SELECT * FROM attachments WHERE network = ? AND container_id = ? AND ifname = ?")
      .get(key.network, key.containerId, key.ifname) as AttachmentRow | undefined;
    return row ? this.toRecord(row, this.addressesOf(key)) : undefined;
  }

  /** The attachment of (containerId, ifname) in whichever network holds it. */
  findAttachment(containerId: string, ifname: string): AttachmentRecord | undefined {
    const row = this.db
      .prepare("SELECT * FROM attachments WHERE container_id = ? AND ifname = ?")
      .get(containerId, ifname) as AttachmentRow | undefined;
    return row ? this.get({ network: row.network, containerId, ifname }) : undefined;
  }

  list(network?: string): AttachmentRecord[] {
    const rows = (
      network === undefined
        ? this.db.prepare("SELECT * FROM attachments ORDER BY created_at").all()
        : this.db.prepare("SELECT * FROM attachments WHERE network = ? ORDER BY created_at").all(network)
    ) as AttachmentRow[];
    const addrs = this.db.prepare("SELECT * FROM addresses").all() as AddressRow[];
    const byKey = new Map<string, AllocatedAddress[]>();
    for (const a of addrs) {
      const k = `${a.network}\0${a.container_id}\0${a.ifname}`;
      const list = byKey.get(k) ?? [];
      list.push({ family: a.family as Family, address: a.address, prefix: a.prefix });
      byKey.set(k, list);
    }
    return rows.map((r) => this.toRecord(r, byKey.get(`${r.network}\0${r.container_id}\0${r.ifname}`) ?? []));
  }

  /** A cheap write-and-read probe for STATUS. */
  healthy(): boolean {
    try {
      this.db.prepare("SELECT count(*) FROM attachments").get();
      return true;
    } catch {
      return false;
    }
  }

  private addressesOf(key: AttachmentKey): AllocatedAddress[] {
    const rows = this.db
      .prepare("SELECT * FROM addresses WHERE network = ? AND container_id = ? AND ifname = ? ORDER BY family")
      .all(key.network, key.containerId, key.ifname) as AddressRow[];
    return rows.map((a) => ({ family: a.family as Family, address: a.address, prefix: a.prefix }));
  }

  private toRecord(r: AttachmentRow, addresses: AllocatedAddress[]): AttachmentRecord {
    return {
      network: r.network,
      containerId: r.container_id,
      ifname: r.ifname,
      netns: r.netns,
      hostIf: r.host_if,
      state: r.state,
      delegated: r.delegated === 1,
      mtu: r.mtu,
      hostMac: r.host_mac,
      podMac: r.pod_mac,
      addresses: addresses.sort((a, b) => a.family - b.family),
      defaultRoutes: r.default_routes ? r.default_routes.split(",").map((f) => Number(f) as Family) : [],
      ...(r.pod_namespace !== null && r.pod_name !== null
        ? { pod: { namespace: r.pod_namespace, name: r.pod_name } }
        : {}),
    };
  }
}
