// The policy controller's public types and errors (the agent, metrics and tests import them).
import type { Logger } from "pino";
import type { CounterInfo, LocalPod, RenderOptions } from "../policy/index.js";
import type { ObjectStore } from "../store/types.js";
import type { PolicyDatapath } from "./datapath/types.js";

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
  /**
   * Where the rules are put in force, made once by the caller (startPolicyEnforcement). Absent:
   * an nft datapath in `netns` with `render`.
   */
  datapath?: PolicyDatapath;
  /** nft table, NFLOG group, log rate (defaults: weft, 100, 10/s); also the pod interface prefix the controller watches. */
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
