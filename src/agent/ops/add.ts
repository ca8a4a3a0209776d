// CNI ADD: validate, admit, record the allocation as 'adding', apply the pod's policy, wire the
// veth, mark it 'ready'. Any failure after the reservation undoes the link, the addresses and
// the policy entries, so nothing half-made is left behind.
import type { Result } from "../../cni/types.js";
import { formatIp, parseIp, type IpFamily as Family } from "../../net/ip.js";
import { type AttachmentRecord, IpamError } from "../../ipam/store.js";
import { KernelCommandError } from "../../kernel/exec.js";
import type { PodRoute } from "../../kernel/pod/types.js";
import { netnsFileState } from "../../kernel/nsfile.js";
import { AgentCode, AgentFailure } from "../codes.js";
import { hostIfName, randomMac } from "../naming.js";
import type { AddRequest } from "../../agent-api/schema.js";
import { lockKey, type OpContext } from "./context.js";
import { buildResult, localPodOf, podRefOf } from "./pods.js";

export async function cmdAdd(ctx: OpContext, req: AddRequest): Promise<Result> {
  const { o } = ctx;
  const mtu = req.mtu ?? ctx.network().mtu;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)
    throw new AgentFailure(AgentCode.InvalidConfig, `mtu ${mtu} is out of range (68-65535)`);
  const nsState = netnsFileState(req.netns);
  if (nsState === "missing")
    throw new AgentFailure(AgentCode.UnknownContainer, `network namespace ${req.netns} does not exist`);
  if (nsState === "not-a-namespace")
    throw new AgentFailure(AgentCode.InvalidEnvironment, `${req.netns} is not a network namespace file`);
  // CNI code 4 (invalid necessary environment variables): CNI_NETNS itself is wrong. Wiring
  // "the pod" there would put its interface, addresses and routes into the node itself.
  if (nsState === "host")
    throw new AgentFailure(
      AgentCode.InvalidEnvironment,
      `CNI_NETNS ${req.netns} is the node's own network namespace (the agent's or PID 1's), not a pod's; refusing to wire a pod interface into the host`,
    );
  const delegated = req.ipam ? delegatedAddresses(req) : undefined;
  const pod = podRefOf(req.args);
  // Before any allocation: the pod's labels (policy) and this node's subnet come from the store.
  await o.admit?.(pod);
  const pools = ctx.network().pools;
  if (!delegated && pools.length === 0)
    throw new AgentFailure(AgentCode.TryAgainLater, "this node has no pod CIDR yet; try again later");
  return ctx.locks.run(lockKey(req.containerId, req.ifname), async () => {
    const hostIf = hostIfName(req.containerId, req.ifname);
    let rec: AttachmentRecord;
    try {
      rec = o.store.reserve({
        network: req.network,
        containerId: req.containerId,
        ifname: req.ifname,
        netns: req.netns,
        hostIf,
        mtu,
        hostMac: randomMac(),
        podMac: randomMac(),
        pools: delegated ? null : pools,
        ...(delegated ? { delegated: delegated.addresses } : {}),
        ...(pod ? { pod } : {}),
      });
    } catch (e) {
      if (e instanceof IpamError) {
        const code =
          e.kind === "exists"
            ? AgentCode.AlreadyExists
            : e.kind === "exhausted"
              ? AgentCode.AddressesExhausted
              : AgentCode.AddressConflict;
        throw new AgentFailure(code, e.message);
      }
      throw e;
    }
    const extraRoutes = delegated?.routes ?? [];
    const t0 = performance.now();
    try {
      // The pod's isolation rules (and, for a pod's further interface, the elements that let its
      // veths carry each other's addresses) are committed before its veth exists, so its first
      // packet already meets them. Anti-spoofing itself is one rule with no per-pod entry.
      if (o.policy) {
        try {
          await o.policy.podAdded(localPodOf(rec));
        } catch (e) {
          throw new AgentFailure(
            AgentCode.TryAgainLater,
            `network policy for the pod could not be applied: ${e instanceof Error ? e.message : String(e)}; try again later`,
          );
        }
      }
      const wired = await ctx.kernelSlots.run(() =>
        o.kernel.wirePod({
          hostIf,
          hostMac: rec.hostMac,
          podIf: req.ifname,
          podMac: rec.podMac,
          netns: req.netns,
          mtu,
          addresses: rec.addresses,
          extraRoutes,
        }),
      );
      o.store.markReady(rec, wired.defaultRoutes);
      rec.defaultRoutes = wired.defaultRoutes;
    } catch (e) {
      // Leave nothing behind: the host end takes the pod end with it; then release the addresses.
      const undo = await o.kernel.deleteHostLinks([hostIf]).then(
        () => undefined,
        (u: unknown) => u,
      );
      o.store.release(rec);
      await ctx.policyRemoved(hostIf);
      if (undo) o.log.error({ err: undo, hostIf }, "could not remove the host veth of a failed ADD");
      if (
        e instanceof KernelCommandError &&
        /File exists/.test(e.stderr) &&
        (await o.kernel.linkExistsIn(req.netns, req.ifname).catch(() => false))
      ) {
        throw new AgentFailure(AgentCode.AlreadyExists, `interface ${req.ifname} already exists in ${req.netns}`);
      }
      throw e;
    }
    o.onPodsChanged?.();
    o.log.info(
      {
        containerId: req.containerId,
        ifname: req.ifname,
        hostIf,
        ...(pod ? { pod: `${pod.namespace}/${pod.name}` } : {}),
        addresses: rec.addresses.map((a) => a.address),
        ms: +(performance.now() - t0).toFixed(1),
      },
      "pod added",
    );
    return buildResult(rec, extraRoutes);
  });
}

function delegatedAddresses(req: AddRequest): {
  addresses: { family: Family; address: string; prefix: number }[];
  routes: PodRoute[];
} {
  const ips = req.ipam?.ips ?? [];
  if (ips.length === 0) throw new AgentFailure(AgentCode.InvalidConfig, "delegated IPAM gave no addresses");
  const addresses = ips.map((ip) => {
    const [addr] = ip.address.split("/");
    const parsed = parseIp(addr);
    if (!parsed)
      throw new AgentFailure(AgentCode.InvalidConfig, `delegated IPAM address "${ip.address}" is not an IP address`);
    // Routed design: the pod holds its address alone, whatever subnet the IPAM plugin used.
    return {
      family: parsed.family,
      address: formatIp(parsed.family, parsed.value),
      prefix: parsed.family === 4 ? 32 : 128,
    };
  });
  const routes: PodRoute[] = [];
  for (const r of req.ipam?.routes ?? []) {
    const [a, len] = r.dst.split("/");
    const fam: Family | undefined = parseIp(a)?.family;
    if (fam === undefined) throw new AgentFailure(AgentCode.InvalidConfig, `delegated route "${r.dst}" is not a CIDR`);
    if (Number(len) === 0) continue; // default routes are always via weft's gateway
    routes.push({ dst: r.dst, family: fam });
  }
  return { addresses, routes };
}
