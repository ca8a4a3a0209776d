// Whether the node can serve an ADD now: joined, lease held, and the store answering.
import type { PodRef } from "../../ipam/store.js";
import { isStoreError } from "../../store/errors.js";
import { AgentCode, AgentFailure } from "../codes.js";
import { type ClusterContext, contact } from "./context.js";

/** Why an ADD cannot be served now, or null. */
export function unavailable(ctx: ClusterContext): string | null {
  switch (ctx.state) {
    case "joining":
      return `the agent has not joined the cluster yet (${ctx.o.store.description}); try again later`;
    case "lost":
      return `the node's lease in ${ctx.o.store.description} is lost (store unreachable); try again later`;
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
export async function admit(ctx: ClusterContext, pod: PodRef | undefined): Promise<void> {
  const why = unavailable(ctx);
  if (why) throw new AgentFailure(AgentCode.TryAgainLater, why);
  try {
    if (pod) await ctx.o.store.objects.get({ kind: "Pod", namespace: pod.namespace, name: pod.name });
    else await ctx.o.store.getNode(ctx.o.node);
    contact(ctx);
  } catch (e) {
    if (isStoreError(e, "NotFound")) {
      contact(ctx);
      return;
    }
    ctx.lastStoreError = e instanceof Error ? e.message : String(e);
    if (isStoreError(e, "Unavailable")) {
      throw new AgentFailure(
        AgentCode.TryAgainLater,
        `the cluster store (${ctx.o.store.description}) is unreachable: ${ctx.lastStoreError}; try again later`,
      );
    }
    throw e;
  }
}
