// What the policy controller needs from a datapath, as a typed interface: NftDatapath (nft/)
// implements it today, an eBPF one will beside it; cases.ts is the suite every one passes. The
// controller decides what to enforce (the compiled model, incrementally for pod churn); the
// datapath only puts a model in force and reads it back.
import type { CompiledModel, ElementChange } from "../../policy/index.js";

/** A counter's value as the datapath read it. */
export interface CounterValue {
  packets: number;
  bytes: number;
}

/** What update() did: nothing differed, or set/map elements were committed. */
export type DatapathUpdate = "none" | "elements";

export interface PolicyDatapath {
  /** The implementation's name, for logs (e.g. "nft"). */
  readonly name: string;
  /**
   * Puts `model` in force in one atomic step, replacing whatever is there (also what a previous
   * agent left: nothing is flushed first, so there is never a moment without rules), with the
   * counters' values carried over. `adopted`: a previous state was there.
   */
  load(model: CompiledModel): Promise<{ adopted: boolean }>;
  /**
   * Moves from `prev` (what the datapath holds) to `next` by changing set and map members only,
   * in one atomic step; rules and counters stay. With `change` (what IncrementalCompiler says it
   * touched) only those members are compared, and `next` must differ from `prev` in members only.
   * Resolves null when `next` is not a members-only change (load() it instead). Rejects when the
   * commit fails: the datapath may then no longer hold `prev`, so load() `next`.
   */
  update(prev: CompiledModel, next: CompiledModel, change?: ElementChange): Promise<DatapathUpdate | null>;
  /** The named counters' values, or null when nothing is loaded. */
  counters(): Promise<Map<string, CounterValue> | null>;
  /** What is in force, as the datapath prints it (for `policy show` and people), or null when nothing is loaded. */
  show(): Promise<string | null>;
  /** Removes everything it loaded (every pod becomes unrestricted); true when something was there. */
  remove(): Promise<boolean>;
}
