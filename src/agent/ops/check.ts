// CNI CHECK: the allocation is ready and the kernel still holds what ADD made (pod interface up
// with its addresses and default routes, host veth, host routes).
import { existsSync } from "node:fs";
import { GATEWAY_V4, GATEWAY_V6 } from "../../kernel/pod/types.js";
import { AgentCode, AgentFailure } from "../codes.js";
import type { CheckRequest } from "../../agent-api/schema.js";
import { lockKey, type OpContext, safeCanonical } from "./context.js";

export async function cmdCheck(ctx: OpContext, req: CheckRequest): Promise<void> {
  const { o } = ctx;
  const fail = (msg: string) => {
    throw new AgentFailure(AgentCode.CheckFailed, msg);
  };
  await ctx.locks.run(lockKey(req.containerId, req.ifname), async () => {
    const rec = o.store.get(req);
    if (!rec) fail(`no allocation for container ${req.containerId} interface ${req.ifname} in network ${req.network}`);
    if (rec!.state !== "ready")
      fail(`the ADD of container ${req.containerId} interface ${req.ifname} has not finished`);
    if (!existsSync(req.netns))
      throw new AgentFailure(AgentCode.UnknownContainer, `network namespace ${req.netns} does not exist`);
    const want = rec!.addresses.map((a) => `${a.address}/${a.prefix}`);
    // Only the prevResult addresses on this pod interface are weft's (a chain may add others).
    const podIdx = (req.prevResult?.interfaces ?? []).findIndex((i) => i.name === req.ifname && i.sandbox);
    const ours = (req.prevResult?.ips ?? []).filter(
      (ip) => podIdx < 0 || ip.interface === undefined || ip.interface === podIdx,
    );
    for (const ip of ours) {
      const [addr] = ip.address.split("/");
      if (!rec!.addresses.some((a) => a.address === safeCanonical(addr)))
        fail(`prevResult address ${ip.address} is not allocated to this pod`);
    }
    const pod = await o.kernel.inspectPod(req.netns, req.ifname);
    if (!pod) return fail(`interface ${req.ifname} is missing in ${req.netns}`);
    if (!pod.link.up) fail(`interface ${req.ifname} in ${req.netns} is down`);
    const have = new Set(
      pod.addresses.map((a) => {
        const [x, p] = a.split("/");
        return `${safeCanonical(x)}/${p}`;
      }),
    );
    for (const w of want) if (!have.has(w)) fail(`address ${w} is missing on ${req.ifname} in ${req.netns}`);
    for (const fam of rec!.defaultRoutes) {
      const dst = fam === 4 ? "0.0.0.0/0" : "::/0";
      const gw = fam === 4 ? GATEWAY_V4 : GATEWAY_V6;
      if (!pod.routes.some((r) => r.dst === dst && r.gateway === gw))
        fail(`default route via ${gw} is missing on ${req.ifname} in ${req.netns}`);
    }
    const hostLinks = await o.kernel.hostLinks();
    if (!hostLinks.some((l) => l.name === rec!.hostIf)) fail(`host veth ${rec!.hostIf} is missing`);
    const routes = await o.kernel.hostRoutes();
    for (const a of rec!.addresses) {
      const dst = `${a.address}/${a.family === 4 ? 32 : 128}`;
      if (!routes.some((r) => r.dst === dst && r.dev === rec!.hostIf))
        fail(`host route ${dst} dev ${rec!.hostIf} is missing`);
    }
  });
}
