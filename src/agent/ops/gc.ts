// CNI GC: release every attachment of the network the runtime no longer lists as valid.
import type { GcRequest } from "../../agent-api/schema.js";
import { holdAll, lockKey, type OpContext } from "./context.js";

export async function cmdGc(ctx: OpContext, req: GcRequest): Promise<void> {
  const { o } = ctx;
  const valid = new Set(req.validAttachments.map((a) => lockKey(a.containerID, a.ifname)));
  const stale = o.store.list(req.network).filter((r) => !valid.has(lockKey(r.containerId, r.ifname)));
  // Each stale attachment under its own lock, so GC never races an ADD or DEL of the same pod;
  // the links of all of them go in one batch.
  let released = 0;
  await holdAll(
    ctx.locks,
    stale.map((r) => lockKey(r.containerId, r.ifname)),
    async () => {
      const still = stale.filter((r) => o.store.get(r));
      await ctx.kernelSlots.run(() => o.kernel.deleteHostLinks(still.map((r) => r.hostIf)));
      for (const r of still) if (o.store.release(r)) released++;
      for (const r of still) await ctx.policyRemoved(r.hostIf);
    },
  );
  if (released) o.onPodsChanged?.();
  o.log.info({ network: req.network, released }, "gc");
}
