// The per-node policy controller: keeps `table inet weft` in the node's network namespace equal
// to compile(objects, local pods), changing it only by atomic nft transactions.
//
//   - Any relevant change (store watch, podAdded/podRemoved) marks the state dirty; a short
//     debounce coalesces bursts into one recompute.
//   - Pod churn (a pod object added, removed or relabelled; a local interface added or removed)
//     is applied incrementally: policy/incremental.ts moves just those pods in the sets and maps
//     they leave or join, and renderModelChange writes only those elements, as one transaction
//     (O(sets) per pod, not a recompile of the cluster). A change it cannot prove element-only
//     (a policy or namespace changed, a pod needs a new isolation group, ...) compiles in full:
//     if only set/map elements differ from what the kernel holds, that is an element
//     transaction (rules and counters untouched); otherwise the whole table is replaced in one
//     transaction, counter values carried over.
//   - start() never flushes: it waits for a complete view of the objects, compiles, and replaces
//     the table atomically, so rules left by a previous agent stay in force until the new ones are.
//   - podAdded() of a pod some policy isolates resolves once a transaction that includes the pod
//     is committed (started at once, not debounced): the CNI ADD waits for it, so the pod's first
//     packet already meets its policy. A pod no policy isolates needs nothing in the kernel
//     before its first packet (anti-spoofing is one reverse-path rule, no per-pod entry), so its
//     podAdded() resolves at once; its membership in peer sets follows in the background (until
//     then others' isolated pods do not admit it: fail-closed, as Kubernetes allows).
//   - A pod's second (third, ...) weft interface is the exception: its sibling-source elements
//     (each veth may send the pod's other addresses) must be in force before it is wired, so its
//     podAdded() waits for the commit. Interfaces of one pod are found by namespace/name, by
//     LocalPod.netns when the agent gives it, and by the kernel (host veths whose peers share a
//     network namespace, re-read on link changes: this last one follows the wiring, not before).
import type { Logger } from "pino";
import { canonicalIp } from "../net/ip.js";
import { listVethPeerNetns, spawnLinkMonitor, type LinkMonitor } from "../kernel/links.js";
import { nftApply, nftDeleteTable, nftListCountersJson, nftListTable } from "../kernel/nft.js";
import { ifname as checkIfname, netnsPath } from "../kernel/validate.js";
import type { Pod } from "../k8s/types.js";
import { IncrementalCompiler, parseCounters, podIsolated, podKey, renderElementUpdate, renderModelChange, renderRuleset, type CompiledModel, type CounterInfo, type LocalPod, type RenderOptions } from "../policy/index.js";
import type { ObjectStore } from "../store/types.js";
import { ObjectCache } from "./objects.js";

export interface PolicyControllerOptions {
  node: string;
  /** Network namespace where the table lives (e.g. /run/netns/node1); absent = the agent's own. */
  netns?: string;
  /** Source of Namespaces, Pods and NetworkPolicies. */
  objects: ObjectStore;
  /** Every pod wired on this node (read once at start; podAdded/podRemoved keep it current). */
  localPods: () => LocalPod[] | Promise<LocalPod[]>;
  log?: Logger;
  /** Coalescing window for bursts of changes. Default 5 ms. */
  debounceMs?: number;
  /** nft table, NFLOG group, log rate (defaults: weft, 100, 10/s). */
  render?: Pick<RenderOptions, "table" | "nflogGroup" | "logRatePerSecond" | "podIfPrefix">;
}

/** A named counter of the table with what it counts. */
export type CounterReading = CounterInfo & { packets: number; bytes: number };

export type ApplyKind = "full" | "elements" | "none";

export interface ControllerStats {
  fullApplies: number;
  elementApplies: number;
  /** Of the element applies, those computed incrementally (no recompile of the cluster). */
  incrementalApplies: number;
  /** Recomputes that compiled the whole cluster (start, policy or namespace changes, structural pod changes). */
  fullCompiles: number;
  failures: number;
  /** podAdded() calls that resolved without waiting for a commit (no policy isolates the pod). */
  immediateAdds: number;
  lastApplyMs: number | null;
  lastError: string | null;
}

/** The datapath could not be programmed; the pod's ADD should fail (the runtime retries). */
export class PolicyApplyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PolicyApplyError";
  }
}

export class PolicyControllerStopped extends Error {
  constructor() {
    super("the policy controller was stopped before the rules were applied");
    this.name = "PolicyControllerStopped";
  }
}

interface Waiter {
  gen: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class PolicyController {
  readonly node: string;
  private readonly netns: string | undefined;
  private readonly cache: ObjectCache;
  /** Local pods by host interface (a pod may have more than one weft interface). */
  private readonly local = new Map<string, LocalPod>();
  /** Interfaces podRemoved() before start(), so the provider's older list does not bring them back. */
  private removedBeforeStart: Array<{ namespace: string; name: string; ifname?: string }> = [];
  private readonly render: RenderOptions;
  private readonly debounceMs: number;
  private readonly log: Logger | undefined;

  /** What the kernel holds (null until this controller's first commit). */
  private applied: CompiledModel | null = null;
  /**
   * Keeps `applied` current for pod churn without recompiling the cluster; its model is
   * `applied` whenever it is set (dropped on structural changes and failed commits).
   */
  private inc: IncrementalCompiler | null = null;
  /** Pods whose objects changed since the last recompute. */
  private pendingPods = new Map<string, { namespace: string; name: string }>();
  /** A namespace or policy changed since the last recompute: compile in full. */
  private structural = true;
  private requested = 0;
  private appliedGen = 0;
  /** The latest generation an ADD waits for. */
  private urgentGen = 0;
  /** Addresses of removed pods -> the generation that takes them out of the kernel. */
  private readonly leaving = new Map<string, number>();
  private waiters: Waiter[] = [];
  private timer: { cancel: () => void; urgent: boolean } | undefined;
  private busy: Promise<void> | null = null;
  private started = false;
  private stopped = false;
  /** Host veths grouped by the network namespace of their peers (only groups of two or more). */
  private sameNetns: string[][] = [];
  private monitor: LinkMonitor | null = null;
  private monitorRestart: NodeJS.Timeout | undefined;
  private netnsRefresh: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(kind: ApplyKind, model: CompiledModel) => void>();
  readonly stats: ControllerStats = { fullApplies: 0, elementApplies: 0, incrementalApplies: 0, fullCompiles: 0, failures: 0, immediateAdds: 0, lastApplyMs: null, lastError: null };

  constructor(private readonly opts: PolicyControllerOptions) {
    this.node = opts.node;
    this.netns = opts.netns === undefined ? undefined : netnsPath(opts.netns);
    this.render = { ...(opts.render ?? {}) };
    this.debounceMs = opts.debounceMs ?? 5;
    this.log = opts.log;
    this.cache = new ObjectCache(
      opts.objects,
      (kind, obj) => {
        // A pod's change is (usually) element-only; anything else recompiles.
        if (kind === "Pod" && obj.metadata.namespace) this.pendingPods.set(podKey(obj.metadata.namespace, obj.metadata.name), { namespace: obj.metadata.namespace, name: obj.metadata.name });
        else this.structural = true;
        this.markDirty();
      },
      opts.log,
    );
  }

  get table(): string {
    return this.render.table ?? "weft";
  }

  /**
   * Loads the objects and local pods, then replaces the table in one transaction (adopting what
   * a previous agent left: nothing is flushed first). Rejects if that first commit fails; the old
   * rules then stay as they were.
   */
  async start(): Promise<void> {
    if (this.started || this.stopped) throw new Error("PolicyController.start() may be called once");
    await this.cache.start();
    // stop() during start() ends the watches' wait too: never commit what may be a partial view.
    if (this.stopped) throw new PolicyControllerStopped();
    const fromAgent = await this.opts.localPods();
    if (this.stopped) throw new PolicyControllerStopped();
    // Pods announced with podAdded() while starting are newer than the provider's list.
    const early = new Map(this.local);
    this.local.clear();
    const removed = (p: LocalPod) => this.removedBeforeStart.some((r) => matchesRef(p, r));
    for (const p of fromAgent) if (!removed(p)) this.local.set(p.ifname, checkLocalPod(p));
    for (const [k, p] of early) this.local.set(k, p);
    this.removedBeforeStart = [];
    this.startLinkMonitor();
    await this.refreshSameNetns(false);
    this.started = true;
    this.requested++;
    const err = await this.cycle();
    if (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stops watching. The rules stay in force (a restarted agent adopts them). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    if (this.monitorRestart) clearTimeout(this.monitorRestart);
    if (this.netnsRefresh) clearTimeout(this.netnsRefresh);
    const m = this.monitor;
    this.monitor = null;
    if (m && m.pid !== undefined && m.exitCode === null && m.signalCode === null) {
      const closed = new Promise<void>((r) => m.once("close", () => r()));
      process.kill(m.pid, "SIGTERM");
      await closed;
    }
    await this.cache.stop();
    await this.busy;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(new PolicyControllerStopped());
  }

  /**
   * A pod is being wired on this node (call it before its veth exists, for every pod). Resolves
   * once the kernel has the pod's isolation rules: at once when no policy isolates it (nothing
   * to wait for; the peer-set update follows in the background), else after the commit. Rejects
   * with PolicyApplyError if an isolated pod's rules could not be applied.
   */
  async podAdded(pod: LocalPod): Promise<void> {
    const p = checkLocalPod(pod);
    // A re-created pod with the same name (new sandbox) gets a new interface; both may coexist
    // until the old one's DEL.
    this.local.set(p.ifname, p);
    this.removedBeforeStart = this.removedBeforeStart.filter((r) => !matchesRef(p, r));
    // The pod object (labels) and its namespace's policies, read now: the watch may lag behind.
    let fresh = true;
    try {
      await this.cache.refreshForPod(p.namespace, p.name);
    } catch (e) {
      fresh = false;
      this.log?.warn({ pod: podKey(p.namespace, p.name), err: String(e) }, "could not read the pod's objects from the store; using the watched view");
    }
    if (this.stopped) throw new PolicyControllerStopped();
    const view = this.cache.podView(p.namespace, p.name);
    // Without a fresh read a policy may be missing from the view: wait for the commit then. An
    // address whose previous pod's entries are still being removed (its DEL released it before
    // the commit) must not inherit that pod's place in peer sets: wait for the removal too.
    const reused = p.ips.some((ip) => (this.leaving.get(ip) ?? 0) > this.appliedGen);
    // Another interface of the same pod: its veths need the sibling elements before this one's first packet.
    const sibling = [...this.local.values()].some((o) => o.ifname !== p.ifname && ((o.namespace === p.namespace && o.name === p.name && o.netns === p.netns) || (p.netns !== undefined && o.netns === p.netns)));
    if (fresh && !reused && !sibling && !podIsolated(p.namespace, view.labels, view.policies)) {
      this.markDirty(false);
      this.stats.immediateAdds++;
      return;
    }
    return this.waitFor(this.markDirty(true));
  }

  /**
   * A pod's interface was removed from this node (CNI DEL). With `ifname`, only that interface
   * (a late DEL of an old sandbox leaves the re-created pod alone); without, all of the pod's.
   * Resolves once its entries are gone from the kernel.
   */
  async podRemoved(ref: { namespace: string; name: string; ifname?: string }): Promise<void> {
    const gone = [...this.local.values()].filter((p) => matchesRef(p, ref));
    if (!this.started) this.removedBeforeStart.push({ ...ref });
    if (gone.length === 0) return;
    for (const p of gone) this.local.delete(p.ifname);
    const gen = this.markDirty(true);
    for (const p of gone) for (const ip of p.ips) this.leaving.set(ip, gen);
    return this.waitFor(gen);
  }

  /** The model the kernel holds now (what explain and `policy show` should read), or null before start. */
  model(): CompiledModel | null {
    return this.applied;
  }

  localPods(): LocalPod[] {
    return [...this.local.values()];
  }

  /** Called after each commit (and for "none": a recompute that changed nothing in the kernel). */
  onApplied(listener: (kind: ApplyKind, model: CompiledModel) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once everything marked dirty so far has been applied. */
  async synced(): Promise<void> {
    return this.waitFor(this.requested);
  }

  /** The table's named counters with what each counts (empty before start or without a table). */
  async counters(): Promise<CounterReading[]> {
    const model = this.applied;
    if (!model) return [];
    const json = await nftListCountersJson(this.table, this.target());
    if (json === null) return [];
    const values = parseCounters(json);
    const out: CounterReading[] = [];
    for (const c of model.counters) {
      const v = values.get(c.name);
      if (v) out.push({ ...c, packets: v.packets, bytes: v.bytes });
    }
    return out;
  }

  /** The table as the kernel prints it, or null when there is none. */
  async kernelRuleset(): Promise<string | null> {
    return nftListTable(this.table, this.target());
  }

  /** Removes the table (decommissioning a node: every pod becomes unrestricted). Stop first. */
  async removeRuleset(): Promise<boolean> {
    return nftDeleteTable(this.table, this.target());
  }

  /** Watches link changes so a pod's new interface is paired with its siblings (see refreshSameNetns). */
  private startLinkMonitor(): void {
    if (this.stopped) return;
    let m: LinkMonitor;
    try {
      m = spawnLinkMonitor(this.target());
    } catch (e) {
      this.log?.warn({ err: String(e) }, "cannot watch links; interfaces of one pod are paired by name only");
      return;
    }
    this.monitor = m;
    const prefix = this.render.podIfPrefix ?? "wf";
    m.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (!d.includes(` ${prefix}`)) return;
      // Coalesce the burst of events one veth creation makes (add, move, up).
      if (this.netnsRefresh) clearTimeout(this.netnsRefresh);
      this.netnsRefresh = setTimeout(() => void this.refreshSameNetns(true), 10);
    });
    m.stderr.resume();
    m.on("error", (e) => this.log?.warn({ err: e.message }, "link monitor failed"));
    m.on("close", () => {
      if (this.monitor === m) this.monitor = null;
      if (!this.stopped) this.monitorRestart = setTimeout(() => this.startLinkMonitor(), 1000);
    });
  }

  /** Re-reads which host veths lead into one namespace; recomputes when that changed. */
  private async refreshSameNetns(mark: boolean): Promise<void> {
    this.netnsRefresh = undefined;
    let groups: string[][];
    try {
      groups = groupByNetns(await listVethPeerNetns(this.target()), this.render.podIfPrefix ?? "wf");
    } catch (e) {
      this.log?.warn({ err: String(e) }, "could not list veths; interfaces of one pod are paired by name only");
      return;
    }
    if (JSON.stringify(groups) === JSON.stringify(this.sameNetns)) return;
    this.sameNetns = groups;
    if (mark && !this.stopped) this.markDirty(true);
  }

  // ---- the apply loop --------------------------------------------------------------------------

  private target(): { netns?: string } {
    return this.netns === undefined ? {} : { netns: this.netns };
  }

  /** `urgent`: someone (an ADD) waits for this change, so the commit starts without the debounce. */
  private markDirty(urgent = false): number {
    this.requested++;
    if (urgent) this.urgentGen = this.requested;
    this.pump();
    return this.requested;
  }

  private waitFor(gen: number): Promise<void> {
    if (this.stopped) return Promise.reject(new PolicyControllerStopped());
    if (this.appliedGen >= gen) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ gen, resolve, reject }));
  }

  private pump(): void {
    if (!this.started || this.stopped || this.busy || this.appliedGen >= this.requested) return;
    const failing = this.stats.failures > 0;
    // Urgent work still coalesces: everything that arrives while a commit runs goes into the next.
    const urgent = !failing && this.urgentGen > this.appliedGen;
    if (this.timer && (this.timer.urgent || !urgent)) return;
    this.timer?.cancel();
    const run = () => {
      this.timer = undefined;
      void this.cycle();
    };
    if (urgent) {
      const h = setImmediate(run);
      this.timer = { urgent, cancel: () => clearImmediate(h) };
    } else {
      const delay = failing ? Math.min(100 * 2 ** Math.min(this.stats.failures, 6), 5000) : this.debounceMs;
      const h = setTimeout(run, delay);
      this.timer = { urgent, cancel: () => clearTimeout(h) };
    }
  }

  /** One recompute + commit; settles the waiters it covers. Returns the error, if any. */
  private async cycle(): Promise<PolicyApplyError | null> {
    let done!: () => void;
    this.busy = new Promise((r) => (done = r));
    const target = this.requested;
    let error: PolicyApplyError | null = null;
    try {
      const t0 = performance.now();
      const { kind, model } = await this.applyOnce();
      this.stats.lastApplyMs = performance.now() - t0;
      this.stats.failures = 0;
      this.stats.lastError = null;
      this.appliedGen = target;
      for (const [ip, gen] of this.leaving) if (gen <= target) this.leaving.delete(ip);
      for (const l of this.listeners) l(kind, model);
      this.settle(target, null);
    } catch (e) {
      error = new PolicyApplyError(`policy rules for node ${this.node} could not be applied: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      this.stats.failures++;
      this.stats.lastError = error.message;
      this.log?.error({ err: error.message, attempt: this.stats.failures }, "policy apply failed; will retry");
      this.settle(target, error);
      // Retry later: the next cycle covers the same changes.
      this.requested = Math.max(this.requested, target + 1);
    } finally {
      this.busy = null;
      done();
      this.pump();
    }
    return error;
  }

  private settle(gen: number, err: Error | null): void {
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.gen > gen) keep.push(w);
      else if (err) w.reject(err);
      else w.resolve();
    }
    this.waiters = keep;
  }

  private async applyOnce(): Promise<{ kind: ApplyKind; model: CompiledModel }> {
    // What changed since the last recompute, taken in the same tick as the objects are read:
    // anything later goes into the next cycle.
    const pendingPods = this.pendingPods;
    this.pendingPods = new Map();
    const structural = this.structural;
    this.structural = false;
    const prev = this.applied;
    const inc = this.inc;
    this.inc = null; // set again only once the kernel holds its model
    if (prev && inc && inc.model === prev && !structural) {
      const pods = new Map<string, Pod | null>();
      for (const [key, ref] of pendingPods) pods.set(key, this.cache.pod(ref.namespace, ref.name) ?? null);
      const r = inc.update({ pods, local: [...this.local.values()], sameNetns: this.sameNetns });
      if (r) {
        const script = renderModelChange(prev, r.model, r.change, this.render);
        if (script === "") {
          this.applied = r.model;
          this.inc = inc;
          return { kind: "none", model: r.model };
        }
        try {
          await nftApply(script, this.target());
          this.applied = r.model;
          this.inc = inc;
          this.stats.elementApplies++;
          this.stats.incrementalApplies++;
          this.log?.debug({ node: this.node, pods: pods.size }, "policy elements updated incrementally");
          return { kind: "elements", model: r.model };
        } catch (e) {
          // The kernel no longer holds `prev` (table changed behind our back): replace it whole.
          this.log?.warn({ err: String(e) }, "element update failed; replacing the whole table");
          return this.applyFull(null);
        }
      }
      // A structural pod change (e.g. a new isolation group): compile in full.
    }
    return this.applyFull(prev);
  }

  /** Compiles the cluster; commits the element diff against `prev` if that is all, else the whole table. */
  private async applyFull(prev: CompiledModel | null): Promise<{ kind: ApplyKind; model: CompiledModel }> {
    const first = this.applied === null;
    const snap = this.cache.snapshot();
    const inc = IncrementalCompiler.from({ ...snap, node: this.node, local: [...this.local.values()], sameNetns: this.sameNetns });
    this.stats.fullCompiles++;
    const next = inc.model;
    if (prev) {
      const update = renderElementUpdate(prev, next, this.render);
      if (update === "") {
        this.applied = next;
        this.inc = inc;
        return { kind: "none", model: next };
      }
      if (update !== null) {
        try {
          await nftApply(update, this.target());
          this.applied = next;
          this.inc = inc;
          this.stats.elementApplies++;
          this.log?.debug({ node: this.node }, "policy elements updated");
          return { kind: "elements", model: next };
        } catch (e) {
          this.log?.warn({ err: String(e) }, "element update failed; replacing the whole table");
        }
      }
    }
    const json = await nftListCountersJson(this.table, this.target());
    const counterValues = json === null ? new Map<string, { packets: number; bytes: number }>() : parseCounters(json);
    await nftApply(renderRuleset(next, { ...this.render, counterValues }), this.target());
    this.applied = next;
    this.inc = inc;
    this.stats.fullApplies++;
    this.log?.info({ node: this.node, policies: next.policies.length, localPods: next.localPods.length, groups: next.groups.length, adopted: first && json !== null }, "policy ruleset applied");
    return { kind: "full", model: next };
  }
}

// ---- interfaces sharing a network namespace (kernel view) --------------------------------------

function groupByNetns(links: Array<{ ifname: string; netnsid: number }>, prefix: string): string[][] {
  const by = new Map<number, string[]>();
  for (const l of links) if (l.ifname.startsWith(prefix)) by.set(l.netnsid, [...(by.get(l.netnsid) ?? []), l.ifname]);
  return [...by.values()].filter((g) => g.length > 1).map((g) => g.sort()).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

function matchesRef(p: LocalPod, ref: { namespace: string; name: string; ifname?: string }): boolean {
  return p.namespace === ref.namespace && p.name === ref.name && (ref.ifname === undefined || p.ifname === ref.ifname);
}

function checkLocalPod(p: LocalPod): LocalPod {
  checkIfname(p.ifname);
  const ips = p.ips.map((ip) => {
    // CNI results give "addr/prefix"; the datapath wants the address.
    const c = canonicalIp(ip.replace(/\/\d{1,3}$/, ""));
    if (c === null) throw new Error(`pod ${p.namespace}/${p.name}: "${ip}" is not an IP address`);
    return c;
  });
  return { namespace: p.namespace, name: p.name, ifname: p.ifname, ips, ...(p.netns !== undefined ? { netns: p.netns } : {}) };
}
