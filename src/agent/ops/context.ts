// What every agent operation shares: the options the service was made with, the per-attachment
// locks, the bound on kernel work, and the node's current pod network.
import type { Logger } from "pino";
import type { Pool } from "../../ipam/pool.js";
import { canonicalIp } from "../../net/ip.js";
import type { IpamStore, PodRef } from "../../ipam/store.js";
import type { PodKernel } from "../../kernel/pod/types.js";
import type { LocalPod } from "../../policy/index.js";
import type { KeyedMutex, Semaphore } from "../locks.js";
import type { LinkReaper } from "../reaper.js";

/** The node's network policy, as the service needs it (src/policy-agent's controller in the agent). */
export interface PodPolicyHook {
  /** Resolves once the pod's isolation rules (and a further interface's sibling-source elements) are in the kernel. */
  podAdded(pod: LocalPod): Promise<void>;
  /** The host interface is gone: drop its rules. */
  podRemoved(hostIf: string): Promise<void>;
}

export interface AgentServiceOptions {
  node: string;
  /** The node's pod CIDRs; setNetwork() changes them (cluster mode learns them after start). */
  pools: Pool[];
  /** Pod MTU unless an AddRequest says otherwise. */
  mtu: number;
  store: IpamStore;
  kernel: PodKernel;
  log: Logger;
  /** Kernel operations in flight at once. */
  kernelConcurrency?: number;
  /**
   * Asked before every ADD: throws AgentFailure (code 11, try again later) while the agent cannot
   * place a pod (cluster store unreachable, not joined yet, lease lost).
   */
  admit?: (pod: PodRef | undefined) => Promise<void>;
  /** Why the agent cannot serve ADD now (for STATUS), or null when it can. */
  unavailable?: () => string | null;
  policy?: PodPolicyHook;
  /** Called after an ADD or DEL changed the set of wired pods. */
  onPodsChanged?: () => void;
}

/** The state one AgentService hands to each of its operations. */
export interface OpContext {
  readonly o: AgentServiceOptions;
  readonly locks: KeyedMutex;
  readonly kernelSlots: Semaphore;
  readonly reaper: LinkReaper;
  /** The node's pod CIDRs and pod MTU now. */
  network(): { pools: Pool[]; mtu: number };
  /** Drops a removed pod's policy entries; a failure is logged (the next policy sync repairs it). */
  policyRemoved(hostIf: string): Promise<void>;
}

export const lockKey = (containerId: string, ifname: string) => `${containerId}\0${ifname}`;

/** Runs fn holding every key's lock (taken in sorted order, so two callers cannot deadlock). */
export function holdAll(locks: KeyedMutex, keys: string[], fn: () => Promise<void>): Promise<void> {
  const sorted = [...new Set(keys)].sort();
  const step = (i: number): Promise<void> => (i === sorted.length ? fn() : locks.run(sorted[i], () => step(i + 1)));
  return step(0);
}

export function safeCanonical(a: string): string {
  return canonicalIp(a) ?? a;
}
