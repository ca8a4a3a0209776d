// Steering pod traffic into an encryption device, and the strict guard behind it:
// - a policy routing table (looked up before main by a rule that skips the daemon's own marked
//   packets) holding one route per remote pod subnet "dev <device>", or "blackhole" when the peer
//   cannot be encrypted to yet (strict: a packet is dropped here, never falls through to the
//   backend's clear-text path);
// - an nft table that drops, in postrouting, every packet to a remote pod address (cluster CIDRs
//   minus the node's own pod subnets) that would leave by any device but the encryption device:
//   the last line, whatever the routing says (a VXLAN device, a default route, a route added by hand).
import { KernelCommandError } from "./exec.js";
import { nftApply, nftDeleteTable, nftListTable, nftTableName } from "./nft.js";
import { read, readJson, write, type KernelContext } from "./tracked.js";
import { cidr as checkCidr, ifname, InvalidKernelInput, netnsPath } from "./validate.js";

export interface SteerRoute {
  /** Destination CIDR (canonical). */
  readonly dst: string;
  /** "dev": via the encryption device; "blackhole": drop (strict, peer not encryptable yet). */
  readonly via: "dev" | "blackhole";
}

function table(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 0xfffffff0 || n === 253 || n === 254 || n === 255)
    throw new InvalidKernelInput(`routing table ${n} is not a free table number`);
  return String(n);
}

const fam = (c: string): "-4" | "-6" => (c.includes(":") ? "-6" : "-4");

interface IpRoute {
  dst: string;
  dev?: string;
  type?: string;
}

/** Routes of the table: dst -> "dev" (through `dev`) | "blackhole" | "other". */
export async function listSteerRoutes(ctx: KernelContext, tableId: number, dev: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of ["-4", "-6"]) {
    let rows: IpRoute[];
    try {
      rows = await readJson<IpRoute>(ctx, ["ip", "-j", f, "route", "show", "table", table(tableId)]);
    } catch (e) {
      // An empty table that never existed: "ip route show table N" fails on some versions.
      if (e instanceof KernelCommandError) continue;
      throw e;
    }
    for (const r of rows) {
      const dst = r.dst.includes("/") ? r.dst : `${r.dst}/${f === "-4" ? 32 : 128}`;
      out.set(dst, r.type === "blackhole" ? "blackhole" : r.dev === dev ? "dev" : "other");
    }
  }
  return out;
}

/** Makes the table hold exactly `want`; returns what changed ("add 10.244.2.0/24 dev wft..."). */
export async function syncSteerRoutes(
  ctx: KernelContext,
  tableId: number,
  dev: string,
  want: readonly SteerRoute[],
): Promise<string[]> {
  ifname(dev);
  const have = await listSteerRoutes(ctx, tableId, dev);
  const changes: string[] = [];
  const wanted = new Set<string>();
  for (const r of want) {
    checkCidr(r.dst);
    wanted.add(r.dst);
    if (have.get(r.dst) === r.via) continue;
    const argv =
      r.via === "dev"
        ? ["ip", fam(r.dst), "route", "replace", r.dst, "dev", dev, "table", table(tableId)]
        : ["ip", fam(r.dst), "route", "replace", "blackhole", r.dst, "table", table(tableId)];
    await write(ctx, argv);
    changes.push(`${have.has(r.dst) ? "replace" : "add"} ${r.dst} ${r.via === "dev" ? `dev ${dev}` : "blackhole"}`);
  }
  for (const dst of have.keys()) {
    if (wanted.has(dst)) continue;
    await write(ctx, ["ip", fam(dst), "route", "del", dst, "table", table(tableId)]);
    changes.push(`delete ${dst}`);
  }
  return changes;
}

interface IpRule {
  priority?: number;
  table?: string;
  fwmark?: string;
  not?: null;
}

/**
 * The rule "not fwmark MARK lookup TABLE" at `priority`, per family: everything but the daemon's
 * own (marked) packets sees the table first; a miss there falls through to main.
 */
export async function ensureSteerRule(
  ctx: KernelContext,
  tableId: number,
  mark: number,
  priority: number,
): Promise<string[]> {
  const changes: string[] = [];
  for (const f of ["-4", "-6"] as const) {
    const rules = await readJson<IpRule>(ctx, ["ip", "-j", f, "rule", "show"]);
    const ok = rules.some(
      (r) => r.priority === priority && r.table === table(tableId) && "not" in r && Number(r.fwmark) === mark,
    );
    if (ok) continue;
    await write(ctx, [
      "ip",
      f,
      "rule",
      "add",
      "not",
      "fwmark",
      `0x${mark.toString(16)}`,
      "table",
      table(tableId),
      "priority",
      String(priority),
    ]);
    changes.push(`add rule ${f} not fwmark 0x${mark.toString(16)} lookup ${tableId} priority ${priority}`);
  }
  return changes;
}

/** Removes the rules and flushes the table (teardown). */
export async function removeSteering(ctx: KernelContext, tableId: number, priority: number): Promise<void> {
  for (const f of ["-4", "-6"] as const) {
    for (let i = 0; i < 8; i++) {
      const rules = await readJson<IpRule>(ctx, ["ip", "-j", f, "rule", "show"]);
      if (!rules.some((r) => r.priority === priority && r.table === table(tableId))) break;
      await write(ctx, ["ip", f, "rule", "del", "priority", String(priority), "table", table(tableId)]);
    }
    await write(ctx, ["ip", f, "route", "flush", "table", table(tableId)]).catch(() => undefined);
  }
}

interface IpLink {
  ifname: string;
  mtu: number;
  operstate?: string;
  flags?: string[];
}

/** Sets the device's MTU and brings it up, writing only what differs; returns the changes. */
export async function ensureLinkUp(ctx: KernelContext, dev: string, mtu: number): Promise<string[]> {
  ifname(dev);
  const [link] = await readJson<IpLink>(ctx, ["ip", "-j", "link", "show", "dev", dev]);
  if (!link) throw new InvalidKernelInput(`device ${dev} does not exist`);
  const changes: string[] = [];
  if (link.mtu !== mtu) {
    await write(ctx, ["ip", "link", "set", "dev", dev, "mtu", String(mtu)]);
    changes.push(`set ${dev} mtu ${mtu}`);
  }
  if (!(link.flags ?? []).includes("UP")) {
    await write(ctx, ["ip", "link", "set", "dev", dev, "up"]);
    changes.push(`set ${dev} up`);
  }
  return changes;
}

export async function linkExists(ctx: KernelContext, dev: string): Promise<boolean> {
  try {
    await read(ctx, ["ip", "-j", "link", "show", "dev", ifname(dev)]);
    return true;
  } catch (e) {
    if (e instanceof KernelCommandError) return false;
    throw e;
  }
}

// ---- the strict guard --------------------------------------------------------------------------

export interface GuardSpec {
  /** nft table name (inet family). */
  readonly table: string;
  /** The only devices pod traffic to remote pods may leave by. */
  readonly allowedDevices: readonly string[];
  /** Cluster CIDRs (both families). */
  readonly clusterCIDRs: readonly string[];
  /** This node's own pod subnets (exempt: local delivery). */
  readonly localCIDRs: readonly string[];
}

export function guardScript(g: GuardSpec): string {
  const t = nftTableName(g.table);
  for (const d of g.allowedDevices) ifname(d);
  for (const c of [...g.clusterCIDRs, ...g.localCIDRs]) checkCidr(c);
  const set = (name: string, type: string, els: readonly string[]) =>
    `  set ${name} {\n    type ${type}\n    flags interval\n${els.length ? `    elements = { ${els.join(", ")} }\n` : ""}  }\n`;
  const v4 = (l: readonly string[]) => l.filter((c) => !c.includes(":"));
  const v6 = (l: readonly string[]) => l.filter((c) => c.includes(":"));
  const devs = g.allowedDevices.map((d) => `"${d}"`).join(", ");
  return (
    `table inet ${t}\ndelete table inet ${t}\ntable inet ${t} {\n` +
    set("cluster4", "ipv4_addr", v4(g.clusterCIDRs)) +
    set("local4", "ipv4_addr", v4(g.localCIDRs)) +
    set("cluster6", "ipv6_addr", v6(g.clusterCIDRs)) +
    set("local6", "ipv6_addr", v6(g.localCIDRs)) +
    `  chain postrouting {\n    type filter hook postrouting priority 0; policy accept;\n` +
    (devs ? `    oifname { ${devs} } accept\n` : "") +
    `    ip daddr @cluster4 ip daddr != @local4 counter drop comment "pod traffic to a remote node that cannot be encrypted"\n` +
    `    ip6 daddr @cluster6 ip6 daddr != @local6 counter drop comment "pod traffic to a remote node that cannot be encrypted"\n` +
    `  }\n}\n`
  );
}

/** Applies the guard atomically (one nft transaction replaces the old one: no gap). */
export async function applyGuard(ctx: KernelContext, g: GuardSpec): Promise<void> {
  const script = guardScript(g);
  ctx.onCommand?.(["nft", "-f", "-"], "write");
  await nftApply(script, ctx.netns === undefined ? {} : { netns: netnsPath(ctx.netns) });
}

/** The guard table as nft prints it, or null. */
export function readGuard(ctx: KernelContext, tableName: string): Promise<string | null> {
  return nftListTable(tableName, ctx.netns === undefined ? {} : { netns: netnsPath(ctx.netns) });
}

/** Packets the guard dropped so far (the sum of its counters), or null without the table. */
export async function guardDrops(ctx: KernelContext, tableName: string): Promise<number | null> {
  const text = await readGuard(ctx, tableName);
  if (text === null) return null;
  let n = 0;
  for (const m of text.matchAll(/counter packets (\d+)/g)) n += Number(m[1]);
  return n;
}

export async function removeGuard(ctx: KernelContext, tableName: string): Promise<boolean> {
  return nftDeleteTable(tableName, ctx.netns === undefined ? {} : { netns: netnsPath(ctx.netns) });
}
