// The backend's peer routes kept equal to the live node list: a node watch, syncs coalesced over
// 20 ms on each event that changes a peer's datapath, and a full resync every resyncMs (drift repair).
import type { PeerNode, SyncReport } from "../../backends/index.js";
import type { NodeInfo, StoredObject, WatchHandle } from "../../store/types.js";
import { BACKEND_KEY, decodeBackendData, ENCRYPTION_KEY, readBackendData } from "../published.js";
import { type ClusterContext, dualStack } from "./context.js";

/** How long a report waits after a sync on a node event (see syncOnce). */
const REPORT_AFTER_EVENT_MS = 500;

export class PeerSync {
  private readonly nodes = new Map<string, NodeInfo>();
  private watch: WatchHandle | undefined;
  /** Watches of the store objects the backend renders from (bgp: BGPConfiguration, BGPPeer). */
  private objectWatches: WatchHandle[] = [];
  /** Bumped on every object change: part of the sync key, so a change always reaches the backend. */
  private objectsVersion = 0;
  private resync: NodeJS.Timeout | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | null = null;
  private dirty = false;
  /** The next sync reads the kernel even if the peer list is unchanged (drift repair, lease back). */
  private forceSync = true;
  /** The peer list the last successful sync applied, as compared text. */
  private syncedPeers: string | undefined;
  private report: SyncReport | undefined;

  /** publish: a sync finished; republish the node's report after delayMs. */
  constructor(
    private readonly ctx: ClusterContext,
    private readonly publish: (delayMs: number) => void,
  ) {}

  /** What the last sync found (undefined before the first). */
  get lastReport(): SyncReport | undefined {
    return this.report;
  }

  /** Nodes in the watched list, this one included. */
  get nodeCount(): number {
    return this.nodes.size;
  }

  /** Watches the node list (each change schedules a sync); resolves once the watch has listed it. */
  async watchNodes(): Promise<void> {
    const log = this.ctx.o.log;
    this.watch = this.ctx.o.store.watchNodes((ev) => {
      if (ev.type === "removed") this.nodes.delete(ev.object.name);
      else this.nodes.set(ev.object.name, ev.object);
      if (ev.type !== "updated" || !sameDatapath(ev.object, ev.previous))
        log.info({ event: ev.type, peer: ev.object.name, podCIDRs: ev.object.podCIDRs }, "node list changed");
      if (ev.type !== "removed") {
        const problem = ev.object.problem ?? readBackendData(ev.object.backendData).problem;
        // Wired as a peer that published nothing would hide it: say it, once per change.
        if (
          problem &&
          (ev.type !== "updated" ||
            problem !== (ev.previous.problem ?? readBackendData(ev.previous.backendData).problem))
        ) {
          log.error(
            { peer: ev.object.name, problem },
            "a node's data in the store is unreadable; its routes may be missing (weft status shows it)",
          );
        }
      }
      this.schedule();
    });
    await this.watch.ready;
  }

  /**
   * Watches the kinds of objects the backend renders from; each change is passed on whole (the
   * kind's current objects) and schedules a sync. Resolves once every watch has listed its kind.
   */
  async watchObjects(): Promise<void> {
    const backend = this.ctx.backend;
    if (!backend?.objectKinds || !backend.objectsChanged) return;
    for (const kind of backend.objectKinds) {
      const current = new Map<string, StoredObject>();
      const w = this.ctx.o.store.objects.watch(kind, (ev) => {
        if (ev.type === "removed") current.delete(ev.object.metadata.name);
        else current.set(ev.object.metadata.name, ev.object);
        backend.objectsChanged?.(kind, [...current.values()]);
        this.objectsVersion++;
        // (Only names: a BGPPeer's password must never reach the log.)
        this.ctx.o.log.info({ kind, name: ev.object.metadata.name, event: ev.type }, "backend configuration changed");
        this.schedule(false, 2);
      });
      this.objectWatches.push(w);
      // A Kubernetes store without weft's CRDs never lists: go on without the objects (defaults)
      // rather than never joining; the watch delivers them if they appear.
      const listed = await Promise.race([
        w.ready.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 5000).unref()),
      ]);
      if (!listed)
        this.ctx.o.log.warn({ kind }, "could not list the backend's objects yet (CRDs missing?); using the defaults");
    }
  }

  /**
   * The first sync, ours to wait for (and to count: returns its kernel changes); then the periodic
   * resync starts. Call once the state is "ready".
   */
  async firstSync(): Promise<number> {
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    await this.syncing;
    this.dirty = false;
    this.forceSync = true;
    const r = await this.syncOnce();
    this.resync = setInterval(() => this.schedule(true), this.ctx.o.resyncMs ?? 10_000);
    this.resync.unref();
    return r?.changes.length ?? 0;
  }

  /**
   * A sync soon (force: read the kernel even if the peer list is unchanged). windowMs coalesces a
   * burst of events into one sync: node events come in bursts (every agent republishes at once);
   * an object a user applied is one event, and its config change is wanted at once.
   */
  schedule(force = false, windowMs = 20): void {
    this.dirty = true;
    if (force) this.forceSync = true;
    if (this.syncTimer || this.syncing || this.ctx.state === "stopped") return;
    // A short window coalesces a burst of watch events into one sync.
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.syncing = this.syncLoop().finally(() => (this.syncing = null));
    }, windowMs);
  }

  /** Stops the timers at once, then waits for a running sync and closes the watch. */
  async stop(): Promise<void> {
    if (this.syncTimer) clearTimeout(this.syncTimer);
    if (this.resync) clearInterval(this.resync);
    await this.syncing?.catch(() => undefined);
    await this.watch?.close().catch(() => undefined);
    await Promise.all(this.objectWatches.map((w) => w.close().catch(() => undefined)));
  }

  private async syncLoop(): Promise<void> {
    while (this.dirty && this.ctx.state === "ready") {
      this.dirty = false;
      await this.syncOnce();
    }
  }

  private async syncOnce(): Promise<SyncReport | undefined> {
    const { o, backend } = this.ctx;
    // A lost lease means the store's view is unknown: keep the datapath as it is.
    if (!backend || this.ctx.state !== "ready") return undefined;
    // A node that registered but has not set its backend up yet (first join) is not a peer yet.
    const peers: PeerNode[] = [...this.nodes.values()]
      .filter((n) => n.name === o.node || n.backendData[BACKEND_KEY] !== undefined)
      .map((n) => ({
        name: n.name,
        underlay: dualStack(n.addresses),
        podCIDRs: dualStack(n.podCIDRs),
        backendData: decodeBackendData(n.backendData),
        ...(n.labels ? { labels: n.labels } : {}),
      }));
    // Most node events change nothing a route depends on: a peer's published report (every peer
    // republishes when any node joins, so N nodes see N^2 of them), or a new node that has not set
    // its backend up yet. Reading the kernel for each of them costs process spawns on every node at
    // once; the periodic resync still repairs drift.
    // A peer's encryption data (its key) is part of what the sync applies.
    const key = JSON.stringify([
      peers,
      this.objectsVersion,
      [...this.nodes.values()].map((n) => n.backendData[ENCRYPTION_KEY] ?? null),
    ]);
    const fresh = this.forceSync;
    if (!fresh && key === this.syncedPeers && this.report) return this.report;
    this.forceSync = false;
    try {
      // On events, diff against what the last sync wrote; the periodic resync lists the kernel.
      const r = await backend.syncPeers(peers, { incremental: !fresh });
      this.report = r;
      await this.ctx.encryption?.sync(
        [...this.nodes.values()].filter(
          (n) =>
            n.name === o.node ||
            n.backendData[BACKEND_KEY] !== undefined ||
            n.backendData[ENCRYPTION_KEY] !== undefined,
        ),
      );
      // A failed write is retried on the next event, not only at the next resync.
      this.syncedPeers = r.errors.length || r.peers.some((p) => !p.ok) ? undefined : key;
      if (r.changes.length)
        o.log.info(
          { changes: r.changes.map((c) => `${c.action} ${c.object} ${c.detail}${c.peer ? ` (${c.peer})` : ""}`) },
          "peer routes synced",
        );
      const errs = r.peers.filter((p) => !p.ok).map((p) => ({ peer: p.name, errors: p.errors }));
      if (errs.length || r.errors.length)
        o.log.warn({ peers: errs, errors: r.errors }, "some peers could not be wired");
      // After a node event, every agent syncs and republishes at once, and each report is a node
      // event for all N agents: wait until the others have had their turn at the CPU.
      this.publish(fresh ? 0 : REPORT_AFTER_EVENT_MS);
      return r;
    } catch (e) {
      this.syncedPeers = undefined;
      o.log.error({ err: String(e) }, "peer sync failed; will retry");
      return undefined;
    }
  }
}

/** Whether an update changed anything the datapath uses (a report or registration time alone does not). */
function sameDatapath(a: NodeInfo, b: NodeInfo): boolean {
  return (
    a.addresses.join() === b.addresses.join() &&
    a.podCIDRs.join() === b.podCIDRs.join() &&
    JSON.stringify(decodeBackendData(a.backendData)) === JSON.stringify(decodeBackendData(b.backendData)) &&
    a.backendData[ENCRYPTION_KEY] === b.backendData[ENCRYPTION_KEY]
  );
}
