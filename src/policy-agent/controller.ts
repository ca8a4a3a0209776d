// The per-node policy controller: keeps the node's datapath (by default nft: `table inet weft` in
// the node's network namespace) equal to compile(objects, local pods), changing it only by atomic
// steps (for nft, transactions).
//
// Here: the public API and the scheduling (dirty marks, debounce, waiters); apply.ts makes each
// commit through the injected PolicyDatapath (datapath/), veth-groups.ts follows the kernel's
// pairing of a pod's interfaces.
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
import { netnsPath } from "../kernel/validate.js";
import { podIsolated, podKey, type CompiledModel, type LocalPod, type RenderOptions } from "../policy/index.js";
import { TableApplier } from "./apply.js";
import { NftDatapath } from "./datapath/nft/datapath.js";
import type { PolicyDatapath } from "./datapath/types.js";
import { checkLocalPod, matchesRef } from "./local-pods.js";
import { ObjectCache } from "./objects.js";
import {
  PolicyApplyError,
  PolicyControllerStopped,
  type ApplyKind,
  type ControllerStats,
  type CounterReading,
  type PolicyControllerOptions,
} from "./types.js";
import { VethGroups } from "./veth-groups.js";

export {
  PolicyApplyError,
  PolicyControllerStopped,
  type ApplyKind,
  type ControllerStats,
  type CounterReading,
  type PolicyControllerOptions,
} from "./types.js";

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
  /** Where the model is put in force (injected; nft by default). */
  private readonly datapath: PolicyDatapath;

  /** Makes the commits; holds what the kernel holds. */
  private readonly writer: TableApplier;
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
  /** Host veths grouped by the network namespace of their peers (the kernel's view of a pod's interfaces). */
  private readonly veths: VethGroups;
  private readonly listeners = new Set<(kind: ApplyKind, model: CompiledModel) => void>();
  readonly stats: ControllerStats = {
    fullApplies: 0,
    elementApplies: 0,
    incrementalApplies: 0,
    fullCompiles: 0,
    failures: 0,
    immediateAdds: 0,
    lastApplyMs: null,
    lastError: null,
  };

  constructor(private readonly opts: PolicyControllerOptions) {
    this.node = opts.node;
    this.netns = opts.netns === undefined ? undefined : netnsPath(opts.netns);
    this.render = { ...(opts.render ?? {}) };
    this.debounceMs = opts.debounceMs ?? 5;
    this.log = opts.log;
    this.datapath =
      opts.datapath ??
      new NftDatapath({ ...(this.netns === undefined ? {} : { netns: this.netns }), render: this.render });
    this.cache = new ObjectCache(
      opts.objects,
      (kind, obj) => {
        // A pod's change is (usually) element-only; anything else recompiles.
        if (kind === "Pod" && obj.metadata.namespace)
          this.pendingPods.set(podKey(obj.metadata.namespace, obj.metadata.name), {
            namespace: obj.metadata.namespace,
            name: obj.metadata.name,
          });
        else this.structural = true;
        this.markDirty();
      },
      opts.log,
    );
    this.veths = new VethGroups(
      () => this.target(),
      this.render.podIfPrefix ?? "wf",
      () => {
        if (!this.stopped) this.markDirty(true);
      },
      opts.log,
    );
    this.writer = new TableApplier({
      node: this.node,
      datapath: this.datapath,
      cache: this.cache,
      stats: this.stats,
      local: () => [...this.local.values()],
      sameNetns: () => this.veths.groups,
      log: this.log,
    });
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
    await this.veths.start();
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
    await this.veths.stop();
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
      this.log?.warn(
        { pod: podKey(p.namespace, p.name), err: String(e) },
        "could not read the pod's objects from the store; using the watched view",
      );
    }
    if (this.stopped) throw new PolicyControllerStopped();
    const view = this.cache.podView(p.namespace, p.name);
    // Without a fresh read a policy may be missing from the view: wait for the commit then. An
    // address whose previous pod's entries are still being removed (its DEL released it before
    // the commit) must not inherit that pod's place in peer sets: wait for the removal too.
    const reused = p.ips.some((ip) => (this.leaving.get(ip) ?? 0) > this.appliedGen);
    // Another interface of the same pod: its veths need the sibling elements before this one's first packet.
    const sibling = [...this.local.values()].some(
      (o) =>
        o.ifname !== p.ifname &&
        ((o.namespace === p.namespace && o.name === p.name && o.netns === p.netns) ||
          (p.netns !== undefined && o.netns === p.netns)),
    );
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
    return this.writer.applied;
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
    const model = this.writer.applied;
    if (!model) return [];
    const values = await this.datapath.counters();
    if (values === null) return [];
    const out: CounterReading[] = [];
    for (const c of model.counters) {
      const v = values.get(c.name);
      if (v) out.push({ ...c, packets: v.packets, bytes: v.bytes });
    }
    return out;
  }

  /** What the datapath holds as it prints it (nft: the table), or null when there is none. */
  async kernelRuleset(): Promise<string | null> {
    return this.datapath.show();
  }

  /** Removes the rules (decommissioning a node: every pod becomes unrestricted). Stop first. */
  async removeRuleset(): Promise<boolean> {
    return this.datapath.remove();
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
      error = new PolicyApplyError(
        `policy rules for node ${this.node} could not be applied: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
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
    const pods = this.pendingPods;
    this.pendingPods = new Map();
    const structural = this.structural;
    this.structural = false;
    return this.writer.apply({ pods, structural });
  }
}
