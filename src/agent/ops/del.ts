// CNI DEL: remove the host veth (it takes the pod end with it), forget the addresses, then drop
// the pod's policy entries. Idempotent: an unknown attachment still has its would-be link removed.
import { hostIfName } from "../naming.js";
import type { DelRequest } from "../../agent-api/schema.js";
import { lockKey, type OpContext } from "./context.js";

export async function cmdDel(ctx: OpContext, req: DelRequest): Promise<void> {
  const { o } = ctx;
  await ctx.locks.run(lockKey(req.containerId, req.ifname), async () => {
    const rec = o.store.get(req);
    const hostIf = rec?.hostIf ?? hostIfName(req.containerId, req.ifname);
    // The same (containerId, ifname) attached by another network: its link is not ours to remove.
    const other = rec ? undefined : o.store.findAttachment(req.containerId, req.ifname);
    if (other) {
      o.log.warn(
        { containerId: req.containerId, ifname: req.ifname, network: req.network, owner: other.network },
        "DEL for an interface another network attached; left alone",
      );
      return;
    }
    await ctx.reaper.delete(hostIf);
    // Delegated addresses are only forgotten here; their IPAM plugin releases them.
    if (rec) o.store.release(rec);
    // The veth is gone (no more packets), so its rules can go.
    await ctx.policyRemoved(hostIf);
    if (rec) o.onPodsChanged?.();
    o.log.info({ containerId: req.containerId, ifname: req.ifname, hostIf, known: !!rec }, "pod deleted");
  });
}
