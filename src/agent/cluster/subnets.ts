// The node's pod CIDRs: the backend set up with them, and the IPAM pools and MTU handed on.
import { parsePool } from "../../ipam/pool.js";
import { type ClusterContext, dualStack } from "./context.js";

/** Sets the backend up for these pod CIDRs; returns how many kernel changes it made. */
export async function setupBackend(ctx: ClusterContext, podCIDRs: string[]): Promise<number> {
  const res = await ctx.backend!.setup({
    name: ctx.o.node,
    underlay: dualStack(ctx.o.underlay),
    podCIDRs: dualStack(podCIDRs),
  });
  ctx.backendData = { ...res.data };
  ctx.podMtu = res.podMtu;
  ctx.device = res.device;
  if (res.changes.length)
    ctx.o.log.info({ changes: res.changes.map((c) => `${c.action} ${c.object} ${c.detail}`) }, "backend set up");
  return res.changes.length;
}

/** New pod CIDRs: the service's pools for ADDs from now on. */
export function applyCIDRs(ctx: ClusterContext, podCIDRs: string[]): void {
  ctx.podCIDRs = podCIDRs;
  const pools = podCIDRs.map((c) => parsePool(c));
  ctx.o.onNetwork({ pools, mtu: ctx.o.mtu ?? ctx.podMtu });
}
