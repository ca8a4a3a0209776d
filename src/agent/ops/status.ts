// CNI STATUS: can the agent serve an ADD now (joined, store readable, a free address per pool)?
import { usableRange } from "../../ipam/pool.js";
import { cidrHas } from "../../net/cidr.js";
import { ipOrThrow } from "../../net/ip.js";
import { AgentCode, AgentFailure } from "../codes.js";
import type { OpContext } from "./context.js";

export function cmdStatus(ctx: OpContext): void {
  const { o } = ctx;
  const why = o.unavailable?.();
  if (why) throw new AgentFailure(AgentCode.PluginNotAvailable, why);
  if (!o.store.healthy())
    throw new AgentFailure(AgentCode.PluginNotAvailable, "the agent's allocation store is not readable");
  const records = o.store.list().filter((r) => !r.delegated);
  for (const pool of ctx.network().pools) {
    const { first, last } = usableRange(pool);
    const used = records.flatMap((r) => r.addresses).filter((a) => cidrHas(pool, ipOrThrow(a.address))).length;
    if (BigInt(used) > last - first)
      throw new AgentFailure(AgentCode.PluginNotAvailable, `pod CIDR ${pool.cidr} has no free address`);
  }
}
