// `weft ipam check`: compare the allocation records with the kernel (leaked allocations, weft
// links without an owner, addresses routed via the wrong veth) and, with --fix, repair them.
import { existsSync } from "node:fs";
import { cidrHas } from "../../net/cidr.js";
import { ipOrThrow } from "../../net/ip.js";
import type { AttachmentKey, AttachmentRecord } from "../../ipam/store.js";
import { HOST_IF_PATTERN } from "../naming.js";
import type { IpamCheckReport, IpamConflict, IpamLeak } from "../../agent-api/schema.js";
import { lockKey, type OpContext, safeCanonical } from "./context.js";

export async function ipamCheck(ctx: OpContext, fix: boolean): Promise<IpamCheckReport> {
  const { o } = ctx;
  const found = await inspectAllocations(ctx);
  if (!fix || (found.leaked.length === 0 && found.conflicts.length === 0)) return found;
  const fixed: string[] = [];
  // Each repair re-checks under the attachment's lock: an ADD or DEL may have finished since.
  const releaseRecord = async (key: AttachmentKey, why: string, onlyIfBroken: boolean) => {
    await ctx.locks.run(lockKey(key.containerId, key.ifname), async () => {
      const rec = o.store.get(key);
      if (!rec) return;
      if (onlyIfBroken && rec.state === "ready") {
        const present = (await o.kernel.hostLinks()).some((l) => l.name === rec.hostIf);
        if (present && existsSync(rec.netns)) return;
      }
      await o.kernel.deleteHostLinks([rec.hostIf]);
      if (o.store.release(key)) fixed.push(`released ${key.containerId}/${key.ifname} (${why})`);
      await ctx.policyRemoved(rec.hostIf);
    });
  };
  const linkPresent = async (name: string) => (await o.kernel.hostLinks()).some((x) => x.name === name);
  for (const l of found.leaked) {
    if (l.kind === "allocation") await releaseRecord(l as Required<IpamLeak>, l.reason, true);
    else if (!o.store.list().some((r) => r.hostIf === l.hostIf)) {
      // ADD records its allocation before it makes the link, so an unowned link is an orphan.
      // Reported only when this call removed it (absent links are skipped, a DEL may have won).
      if (!(await linkPresent(l.hostIf))) continue;
      const err = await o.kernel.deleteHostLinks([l.hostIf]).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!err && !(await linkPresent(l.hostIf))) fixed.push(`deleted link ${l.hostIf} (${l.reason})`);
      else
        o.log.warn(
          { hostIf: l.hostIf, err: err === undefined ? "still present" : String(err) },
          "ipam check --fix could not delete an orphan link",
        );
    }
  }
  for (const c of found.conflicts) {
    if (c.containerId && c.ifname && c.network && /outside/.test(c.reason)) {
      await releaseRecord(c as Required<IpamConflict>, c.reason, false);
    } else if (c.devices) {
      const owner = o.store.list().find((r) => r.addresses.some((a) => a.address === c.address));
      const dst = `${c.address}/${c.address.includes(":") ? 128 : 32}`;
      for (const dev of c.devices.filter((d) => d !== owner?.hostIf)) {
        const err = await o.kernel.deleteHostRoute({ dst, dev }).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (err === undefined) fixed.push(`deleted route ${dst} dev ${dev}`);
        else o.log.warn({ dst, dev, err: String(err) }, "ipam check --fix could not delete a conflicting route");
      }
    }
  }
  return { ...(await inspectAllocations(ctx)), fixed };
}

async function inspectAllocations(ctx: OpContext): Promise<IpamCheckReport> {
  const { o } = ctx;
  const pools = ctx.network().pools;
  // Kernel first, records second: ADD writes its record before it makes links, so a link
  // seen here without a record really has no owner.
  const links = new Set((await o.kernel.hostLinks()).map((l) => l.name));
  const routes = await o.kernel.hostRoutes();
  const records = o.store.list();
  const busy = (r: AttachmentRecord) => ctx.locks.isLocked(lockKey(r.containerId, r.ifname));
  const leaked: IpamLeak[] = [];
  const conflicts: IpamConflict[] = [];
  const owner = (r: AttachmentRecord) => ({ network: r.network, containerId: r.containerId, ifname: r.ifname });
  for (const r of records) {
    if (busy(r)) continue; // an operation on it is in flight
    const addresses = r.addresses.map((a) => a.address);
    if (r.state === "adding")
      leaked.push({ kind: "allocation", hostIf: r.hostIf, ...owner(r), addresses, reason: "its ADD never finished" });
    else if (!links.has(r.hostIf))
      leaked.push({
        kind: "allocation",
        hostIf: r.hostIf,
        ...owner(r),
        addresses,
        reason: `host veth ${r.hostIf} is gone (pod or its namespace removed without DEL)`,
      });
    else if (!existsSync(r.netns))
      leaked.push({
        kind: "allocation",
        hostIf: r.hostIf,
        ...owner(r),
        addresses,
        reason: `network namespace ${r.netns} is gone`,
      });
    for (const a of r.addresses) {
      if (!r.delegated && !pools.some((p) => cidrHas(p, ipOrThrow(a.address)))) {
        conflicts.push({
          address: a.address,
          ...owner(r),
          reason: `outside this node's pod CIDRs (${pools.map((p) => p.cidr).join(", ")})`,
        });
      }
    }
  }
  const owned = new Set(records.map((r) => r.hostIf));
  for (const name of links) {
    if (HOST_IF_PATTERN.test(name) && !owned.has(name))
      leaked.push({ kind: "link", hostIf: name, reason: "weft host veth without an allocation" });
  }
  // Host routes to single addresses: an allocated address must be routed only via its own veth.
  const byAddr = new Map<string, string[]>();
  for (const rt of routes) {
    const m = /^(.+)\/(32|128)$/.exec(rt.dst);
    if (!m || rt.gateway) continue;
    const a = safeCanonical(m[1]);
    byAddr.set(a, [...(byAddr.get(a) ?? []), rt.dev]);
  }
  for (const r of records) {
    if (busy(r)) continue;
    for (const a of r.addresses) {
      const devs = byAddr.get(a.address) ?? [];
      if (devs.length > 1 || (devs.length === 1 && devs[0] !== r.hostIf)) {
        conflicts.push({
          address: a.address,
          ...owner(r),
          devices: devs,
          reason: `routed via ${devs.join(", ")}; allocated to ${r.hostIf}`,
        });
      }
    }
  }
  // Weft links routing an address that isn't theirs (e.g. a leftover from an old pod).
  for (const [a, devs] of byAddr) {
    if (records.some((r) => r.addresses.some((x) => x.address === a))) continue;
    const weftDevs = devs.filter((d) => HOST_IF_PATTERN.test(d));
    if (weftDevs.length > 1)
      conflicts.push({
        address: a,
        devices: weftDevs,
        reason: `routed via ${weftDevs.join(", ")} without an allocation`,
      });
  }
  return { allocations: records.reduce((n, r) => n + r.addresses.length, 0), leaked, conflicts };
}
