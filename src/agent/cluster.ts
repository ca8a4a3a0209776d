// The node's membership in the cluster: registration under a TTL lease (underlay addresses and
// backend data), the pod CIDRs the lease holds, and the backend's peer routes kept equal to the
// live node list (on every watch event that changes a peer's datapath, and every resyncMs, to
// repair drift).
//
// Never tears down on store trouble: while the store is unreachable or the lease is lost, the
// datapath stays as it is (no syncs) and ADDs are refused with "try again later"; the lease and
// the watch re-establish themselves, and the first sync after that applies what changed meanwhile.
import type { Logger } from "pino";
import type { KernelContext } from "../kernel/tracked.js";
import { createBackend, type Backend, type PeerNode, type SyncReport } from "../backends/index.js";
import { parsePool, type Pool } from "../ipam/pool.js";
import type { PodRef } from "../ipam/store.js";
import { ConflictError, isStoreError, NotInitializedError } from "../store/errors.js";
import type { ClusterSettings, ClusterStore, NodeInfo, NodeLease, WatchHandle } from "../store/types.js";
import { AgentCode, AgentFailure } from "./codes.js";
import {
  type AgentReport,
  BACKEND_KEY,
  decodeBackendData,
  encodeBackendData,
  readBackendData,
  reportFromSync,
} from "./published.js";

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
  /** The backend's kernel context (how its peer writes reach the kernel). */
  kernel?: KernelContext;
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** How long a report waits after a sync on a node event (see syncOnce). */
const REPORT_AFTER_EVENT_MS = 500;

export class Membership {
  state: MembershipState = "joining";
  private settings: ClusterSettings | undefined;
  private lease: NodeLease | undefined;
  private backend: Backend | undefined;
  private backendData: Record<string, string | number | boolean> = {};
  private podCIDRs: string[] = [];
  private podMtu = 0;
  private readonly nodes = new Map<string, NodeInfo>();
  private watch: WatchHandle | undefined;
  private resync: NodeJS.Timeout | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | null = null;
  private dirty = false;
  /** The next sync reads the kernel even if the peer list is unchanged (drift repair, lease back). */
  private forceSync = true;
  /** The peer list the last successful sync applied, as compared text. */
  private syncedPeers: string | undefined;
  private lastReport: SyncReport | undefined;
  private published: string | undefined;
  private publishTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Last time the store answered (a request of ours succeeded). */
  lastStoreContact: number | undefined;
  lastStoreError: string | undefined;

  constructor(private readonly o: MembershipOptions) {}

  get description(): string {
    return this.o.store.description;
  }

  /** The published report (what `weft status` shows for this node). */
  report(): AgentReport {
    const pods = this.o.pods();
    const base = {
      backend: this.o.single ? "none (single host)" : (this.settings?.backend ?? "unknown"),
      podMtu: this.podMtu,
      pods: pods.count,
      ...(pods.stranded ? { strandedPods: pods.stranded } : {}),
    };
    const last = this.lastReport ?? { peers: [], changes: [], errors: [] };
    // A peer-write door that failed to open is the node's own error (health "degraded").
    const netlinkError = this.o.kernel?.peerWrites?.netlinkError;
    return reportFromSync(netlinkError ? { ...last, errors: [...last.errors, netlinkError] } : last, base);
  }

  /** Why an ADD cannot be served now, or null. */
  unavailable(): string | null {
    switch (this.state) {
      case "joining":
        return `the agent has not joined the cluster yet (${this.description}); try again later`;
      case "lost":
        return `the node's lease in ${this.description} is lost (store unreachable); try again later`;
      case "stopped":
        return "the agent is stopping";
      default:
        return null;
    }
  }

  /**
   * ADD's admission: the store must answer (the pod's labels decide its policy) and the lease must
   * be held (the subnet is ours). Throws AgentFailure code 11 otherwise.
   */
  async admit(pod: PodRef | undefined): Promise<void> {
    const why = this.unavailable();
    if (why) throw new AgentFailure(AgentCode.TryAgainLater, why);
    try {
      if (pod) await this.o.store.objects.get({ kind: "Pod", namespace: pod.namespace, name: pod.name });
      else await this.o.store.getNode(this.o.node);
      this.contact();
    } catch (e) {
      if (isStoreError(e, "NotFound")) {
        this.contact();
        return;
      }
      this.lastStoreError = e instanceof Error ? e.message : String(e);
      if (isStoreError(e, "Unavailable")) {
        throw new AgentFailure(
          AgentCode.TryAgainLater,
          `the cluster store (${this.description}) is unreachable: ${this.lastStoreError}; try again later`,
        );
      }
      throw e;
    }
  }

  private contact(): void {
    this.lastStoreContact = Date.now();
    this.lastStoreError = undefined;
  }

  /**
   * Joins: cluster settings, registration (same subnets as before after a restart), backend
   * setup, node watch and a first peer sync. Retries while the store is unreachable; throws
   * NotInitializedError (run `weft cluster init`) and other errors a person must fix.
   */
  async join(): Promise<JoinResult> {
    const log = this.o.log;
    this.settings = await this.retry("read the cluster settings", () => this.readSettings());
    if (!this.o.single) {
      this.backend = createBackend(this.settings.backend, {
        ...(this.o.kernel ? { kernel: this.o.kernel } : {}),
        ...(this.settings.mtu !== undefined ? { mtu: this.settings.mtu } : {}),
      });
      if (this.o.underlay.length === 0)
        throw new AgentFailure(
          AgentCode.InvalidConfig,
          "no underlay address found in this namespace: pass --underlay-address IP",
        );
    }
    // Set the backend up with the subnets this node held before (a restart), so the registration
    // already carries the right backend data: peers then see no change at all.
    let setupChanges = 0;
    const previous = this.backend ? await this.retry("look up this node's subnets", () => this.previousCIDRs()) : [];
    if (previous.length) setupChanges += await this.setupBackend(previous);
    this.lease = await this.retry("register the node", () =>
      this.o.store.registerNode(
        {
          name: this.o.node,
          addresses: this.o.underlay,
          ...(this.backend && previous.length ? { backendData: encodeBackendData(this.backendData) } : {}),
        },
        {
          ...(this.o.ttlSeconds ? { ttlSeconds: this.o.ttlSeconds } : {}),
          ...(this.o.subnetGraceSeconds ? { subnetGraceSeconds: this.o.subnetGraceSeconds } : {}),
        },
      ),
    );
    this.contact();
    const node = this.lease.node;
    log.debug({ podCIDRs: node.podCIDRs, msSinceStart: Math.round(performance.now()) }, "registered");
    if (this.backend && node.podCIDRs.join() !== previous.join()) {
      setupChanges += await this.setupBackend(node.podCIDRs);
      await this.retry("publish the backend data", () =>
        this.lease!.update({ backendData: encodeBackendData(this.backendData) }),
      );
    }
    this.podMtu =
      this.o.mtu ?? (this.backend ? this.podMtu : await (this.o.singleHostMtu?.() ?? Promise.resolve(1500)));
    this.applyCIDRs(node.podCIDRs);
    this.unsubscribe = this.lease.onStateChange((s) => {
      if (this.state === "stopped") return;
      if (s.state === "lost") {
        this.state = "lost";
        this.lastStoreError = s.error.message;
        log.error(
          { err: s.error.message },
          "node lease lost: the datapath stays as it is; ADDs are refused until it is back",
        );
      } else {
        this.restored(s.node).catch((e: unknown) =>
          log.error({ err: String(e) }, "could not take up the re-established lease"),
        );
      }
    });
    let firstSyncChanges = 0;
    if (this.backend) {
      this.watch = this.o.store.watchNodes((ev) => {
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
        this.scheduleSync();
      });
      await this.watch.ready;
      this.state = "ready";
      // The first sync is ours to wait for (and to count).
      if (this.syncTimer) clearTimeout(this.syncTimer);
      this.syncTimer = undefined;
      await this.syncing;
      this.dirty = false;
      this.forceSync = true;
      const r = await this.syncOnce();
      firstSyncChanges = r?.changes.length ?? 0;
      this.resync = setInterval(() => this.scheduleSync(true), this.o.resyncMs ?? 10_000);
      this.resync.unref();
    } else {
      this.state = "ready";
    }
    this.schedulePublish(0);
    return {
      settings: this.settings,
      podCIDRs: node.podCIDRs,
      mtu: this.podMtu,
      setupChanges,
      firstSyncChanges,
      peers: Math.max(0, this.nodes.size - 1),
    };
  }

  /** The node's pods changed: publish the count (coalesced). */
  podsChanged(): void {
    this.schedulePublish(1000);
  }

  /** Stops watching and renewing. Nothing in the kernel changes and nothing is revoked: pods keep working, the lease runs out by TTL. */
  async stop(): Promise<void> {
    this.state = "stopped";
    for (const t of [this.syncTimer, this.publishTimer]) if (t) clearTimeout(t);
    if (this.resync) clearInterval(this.resync);
    this.unsubscribe?.();
    await this.syncing?.catch(() => undefined);
    await this.watch?.close().catch(() => undefined);
    await this.o.store.close().catch(() => undefined);
  }

  // ---- joining -------------------------------------------------------------------------------

  private async readSettings(): Promise<ClusterSettings> {
    if (this.o.single) {
      const pools = this.o.single.pools;
      const v4 = pools.find((p) => p.family === 4);
      const v6 = pools.find((p) => p.family === 6);
      const want = pools.map((p) => p.cidr);
      try {
        const { settings } = await this.o.store.initCluster({
          clusterCIDRs: want,
          backend: "host-gw",
          nodeSubnetPrefix: { ...(v4 ? { v4: v4.prefix } : {}), ...(v6 ? { v6: v6.prefix } : {}) },
        });
        return settings;
      } catch (e) {
        if (e instanceof ConflictError && e.reason === "AlreadyInitialized") {
          const have = await this.o.store.getClusterSettings();
          throw new AgentFailure(
            AgentCode.InvalidConfig,
            `the state dir's store was set up for pod CIDR ${have?.clusterCIDRs.join(",") ?? "?"}, not ${want.join(",")}: give the same --pod-cidr or use a fresh --state-dir`,
          );
        }
        throw e;
      }
    }
    const s = await this.o.store.getClusterSettings();
    if (!s) throw new NotInitializedError(this.description);
    return s;
  }

  private async previousCIDRs(): Promise<string[]> {
    const live = await this.o.store.getNode(this.o.node);
    if (live) return live.podCIDRs;
    const claims = (await this.o.store.listSubnetClaims()).filter((c) => c.node === this.o.node);
    // In the order of the cluster CIDRs, as registration returns them.
    const order = this.settings?.clusterCIDRs ?? [];
    const fam = (c: string) => (c.includes(":") ? 6 : 4);
    return order
      .map((cc) => claims.find((c) => fam(c.cidr) === fam(cc))?.cidr)
      .filter((c): c is string => c !== undefined);
  }

  private async setupBackend(podCIDRs: string[]): Promise<number> {
    const res = await this.backend!.setup({
      name: this.o.node,
      underlay: dualStack(this.o.underlay),
      podCIDRs: dualStack(podCIDRs),
    });
    this.backendData = { ...res.data };
    this.podMtu = res.podMtu;
    if (res.changes.length)
      this.o.log.info({ changes: res.changes.map((c) => `${c.action} ${c.object} ${c.detail}`) }, "backend set up");
    return res.changes.length;
  }

  private applyCIDRs(podCIDRs: string[]): void {
    this.podCIDRs = podCIDRs;
    const pools = podCIDRs.map((c) => parsePool(c));
    this.o.onNetwork({ pools, mtu: this.o.mtu ?? this.podMtu });
  }

  private async restored(node: NodeInfo): Promise<void> {
    const log = this.o.log;
    this.contact();
    if (node.podCIDRs.join() !== this.podCIDRs.join()) {
      // The subnet went to the pool during a long outage. Running pods keep their addresses (they
      // lose cross-node routes: `weft status` counts them as stranded); new pods get the new subnet.
      log.error(
        { old: this.podCIDRs, new: node.podCIDRs },
        "lease re-established with other pod CIDRs: new pods use the new ones; pods with old addresses must be re-created",
      );
      try {
        if (this.backend) {
          await this.setupBackend(node.podCIDRs);
          await this.lease!.update({ backendData: encodeBackendData(this.backendData) });
        }
      } catch (e) {
        log.error({ err: String(e) }, "could not move the backend to the new pod CIDRs");
      }
      this.applyCIDRs(node.podCIDRs);
    }
    if (this.state === "stopped") return;
    this.state = "ready";
    this.published = undefined;
    log.info({ podCIDRs: node.podCIDRs }, "node lease re-established");
    this.scheduleSync(true);
    this.schedulePublish(0);
  }

  /** Runs fn until it succeeds; retries only while the store is unreachable. */
  private async retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let delay = 200;
    for (let attempt = 1; ; attempt++) {
      if (this.state === "stopped") throw new AgentFailure(AgentCode.TryAgainLater, "the agent is stopping");
      try {
        return await fn();
      } catch (e) {
        if (!isStoreError(e, "Unavailable") && !isStoreError(e, "Exhausted")) throw e;
        this.lastStoreError = e.message;
        this.o.log.warn({ attempt, err: e.message }, `could not ${what}; retrying`);
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  // ---- peers ---------------------------------------------------------------------------------

  private scheduleSync(force = false): void {
    this.dirty = true;
    if (force) this.forceSync = true;
    if (this.syncTimer || this.syncing || this.state === "stopped") return;
    // A short window coalesces a burst of watch events into one sync.
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.syncing = this.syncLoop().finally(() => (this.syncing = null));
    }, 20);
  }

  private async syncLoop(): Promise<void> {
    while (this.dirty && this.state === "ready") {
      this.dirty = false;
      await this.syncOnce();
    }
  }

  private async syncOnce(): Promise<SyncReport | undefined> {
    // A lost lease means the store's view is unknown: keep the datapath as it is.
    if (!this.backend || this.state !== "ready") return undefined;
    // A node that registered but has not set its backend up yet (first join) is not a peer yet.
    const peers: PeerNode[] = [...this.nodes.values()]
      .filter((n) => n.name === this.o.node || n.backendData[BACKEND_KEY] !== undefined)
      .map((n) => ({
        name: n.name,
        underlay: dualStack(n.addresses),
        podCIDRs: dualStack(n.podCIDRs),
        backendData: decodeBackendData(n.backendData),
      }));
    // Most node events change nothing a route depends on: a peer's published report (every peer
    // republishes when any node joins, so N nodes see N^2 of them), or a new node that has not set
    // its backend up yet. Reading the kernel for each of them costs process spawns on every node at
    // once; the periodic resync still repairs drift.
    const key = JSON.stringify(peers);
    const fresh = this.forceSync;
    if (!fresh && key === this.syncedPeers && this.lastReport) return this.lastReport;
    this.forceSync = false;
    try {
      // On events, diff against what the last sync wrote; the periodic resync lists the kernel.
      const r = await this.backend.syncPeers(peers, { incremental: !fresh });
      this.lastReport = r;
      // A failed write is retried on the next event, not only at the next resync.
      this.syncedPeers = r.errors.length || r.peers.some((p) => !p.ok) ? undefined : key;
      if (r.changes.length)
        this.o.log.info(
          { changes: r.changes.map((c) => `${c.action} ${c.object} ${c.detail}${c.peer ? ` (${c.peer})` : ""}`) },
          "peer routes synced",
        );
      const errs = r.peers.filter((p) => !p.ok).map((p) => ({ peer: p.name, errors: p.errors }));
      if (errs.length || r.errors.length)
        this.o.log.warn({ peers: errs, errors: r.errors }, "some peers could not be wired");
      // After a node event, every agent syncs and republishes at once, and each report is a node
      // event for all N agents: wait until the others have had their turn at the CPU.
      this.schedulePublish(fresh ? 0 : REPORT_AFTER_EVENT_MS);
      return r;
    } catch (e) {
      this.syncedPeers = undefined;
      this.o.log.error({ err: String(e) }, "peer sync failed; will retry");
      return undefined;
    }
  }

  // ---- what the node publishes ---------------------------------------------------------------

  private schedulePublish(delayMs: number): void {
    if (this.publishTimer || this.state === "stopped") return;
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined;
      void this.publish();
    }, delayMs);
  }

  private async publish(): Promise<void> {
    if (!this.lease || this.state !== "ready") return;
    const data = encodeBackendData(this.backendData, this.report());
    const text = JSON.stringify(data);
    if (text === this.published) return;
    try {
      await this.lease.update({ backendData: data });
      this.published = text;
      this.contact();
    } catch (e) {
      this.o.log.debug({ err: String(e) }, "could not publish the node report; retrying later");
      this.schedulePublish(2000);
    }
  }
}

function dualStack(list: readonly string[]): { ipv4?: string; ipv6?: string } {
  const out: { ipv4?: string; ipv6?: string } = {};
  for (const a of list) {
    if (a.includes(":")) out.ipv6 ??= a;
    else out.ipv4 ??= a;
  }
  return out;
}

/** Whether an update changed anything the datapath uses (a report or registration time alone does not). */
function sameDatapath(a: NodeInfo, b: NodeInfo): boolean {
  return (
    a.addresses.join() === b.addresses.join() &&
    a.podCIDRs.join() === b.podCIDRs.join() &&
    JSON.stringify(decodeBackendData(a.backendData)) === JSON.stringify(decodeBackendData(b.backendData))
  );
}
