// One recompute and commit of the node's table: pod churn incrementally (only the moved pods'
// set and map elements), anything else by a full compile committed as an element diff when that
// is all that changed, else as a whole-table replacement carrying the counters over. Every
// commit is one atomic step of the datapath (for nft, one transaction).
import type { Logger } from "pino";
import type { Pod } from "../k8s/types.js";
import { IncrementalCompiler, type CompiledModel, type LocalPod } from "../policy/index.js";
import type { PolicyDatapath } from "./datapath/types.js";
import type { ObjectCache } from "./objects.js";
import type { ApplyKind, ControllerStats } from "./types.js";

export interface ApplierOptions {
  node: string;
  datapath: PolicyDatapath;
  cache: ObjectCache;
  stats: ControllerStats;
  /** Read at compile time: the local pods and veth groups as they are then. */
  local: () => LocalPod[];
  sameNetns: () => string[][];
  log: Logger | undefined;
}

/** What changed since the last recompute. */
export interface PendingChanges {
  pods: Map<string, { namespace: string; name: string }>;
  /** A namespace or policy changed: compile in full. */
  structural: boolean;
}

export class TableApplier {
  /** What the kernel holds (null until the first commit). */
  applied: CompiledModel | null = null;
  /**
   * Keeps `applied` current for pod churn without recompiling the cluster; its model is
   * `applied` whenever it is set (dropped on structural changes and failed commits).
   */
  private inc: IncrementalCompiler | null = null;

  constructor(private readonly o: ApplierOptions) {}

  async apply(changes: PendingChanges): Promise<{ kind: ApplyKind; model: CompiledModel }> {
    const prev = this.applied;
    const inc = this.inc;
    this.inc = null; // set again only once the kernel holds its model
    if (prev && inc && inc.model === prev && !changes.structural) {
      const pods = new Map<string, Pod | null>();
      for (const [key, ref] of changes.pods) pods.set(key, this.o.cache.pod(ref.namespace, ref.name) ?? null);
      const r = inc.update({ pods, local: this.o.local(), sameNetns: this.o.sameNetns() });
      if (r) {
        let done: Awaited<ReturnType<PolicyDatapath["update"]>>;
        try {
          done = await this.o.datapath.update(prev, r.model, r.change);
        } catch (e) {
          // The kernel no longer holds `prev` (table changed behind our back): replace it whole.
          this.o.log?.warn({ err: String(e) }, "element update failed; replacing the whole table");
          return this.applyFull(null);
        }
        if (done === "none") {
          this.applied = r.model;
          this.inc = inc;
          return { kind: "none", model: r.model };
        }
        if (done === "elements") {
          this.applied = r.model;
          this.inc = inc;
          this.o.stats.elementApplies++;
          this.o.stats.incrementalApplies++;
          this.o.log?.debug({ node: this.o.node, pods: pods.size }, "policy elements updated incrementally");
          return { kind: "elements", model: r.model };
        }
        // The datapath cannot take it as members only: compile in full (below).
      }
      // A structural pod change (e.g. a new isolation group): compile in full.
    }
    return this.applyFull(prev);
  }

  /** Compiles the cluster; commits the element diff against `prev` if that is all, else the whole table. */
  private async applyFull(prev: CompiledModel | null): Promise<{ kind: ApplyKind; model: CompiledModel }> {
    const first = this.applied === null;
    const snap = this.o.cache.snapshot();
    const inc = IncrementalCompiler.from({
      ...snap,
      node: this.o.node,
      local: this.o.local(),
      sameNetns: this.o.sameNetns(),
    });
    this.o.stats.fullCompiles++;
    const next = inc.model;
    if (prev) {
      try {
        const done = await this.o.datapath.update(prev, next);
        if (done !== null) {
          this.applied = next;
          this.inc = inc;
          if (done === "none") return { kind: "none", model: next };
          this.o.stats.elementApplies++;
          this.o.log?.debug({ node: this.o.node }, "policy elements updated");
          return { kind: "elements", model: next };
        }
      } catch (e) {
        this.o.log?.warn({ err: String(e) }, "element update failed; replacing the whole table");
      }
    }
    const { adopted } = await this.o.datapath.load(next);
    this.applied = next;
    this.inc = inc;
    this.o.stats.fullApplies++;
    this.o.log?.info(
      {
        node: this.o.node,
        policies: next.policies.length,
        localPods: next.localPods.length,
        groups: next.groups.length,
        adopted: first && adopted,
      },
      "policy ruleset applied",
    );
    return { kind: "full", model: next };
  }
}
