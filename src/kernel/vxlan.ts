// VXLAN tunnel endpoints (VTEPs): read one as the kernel reports it, create, change, delete, and
// the tx checksum offload switch (VXLAN's checksum offload bug that hit flannel and Calico).
import { KernelCommandError, run, runStatus } from "./exec.js";
import { read, readJson, write, type KernelContext } from "./tracked.js";
import { cidr as vCidr, ifname as vIfname, ip as vIp, mac as vMac, netnsPath as vNetnsPath } from "./validate.js";

export interface VxlanSpec {
  readonly name: string;
  readonly vni: number;
  readonly port: number;
  /** Local underlay address (IPv4 or IPv6): the outer source address. */
  readonly local: string;
  /** Underlay interface the tunnel sends through. */
  readonly dev: string;
  readonly mac: string;
  readonly mtu: number;
}

export interface LinkState {
  readonly name: string;
  readonly kind: string | null;
  readonly mac: string;
  readonly mtu: number;
  readonly up: boolean;
  /** VXLAN attributes; null when the link is not a VXLAN device. */
  readonly vxlan: {
    readonly vni: number;
    readonly port: number;
    readonly local: string | null;
    readonly dev: string | null;
    readonly learning: boolean;
    /** Multicast group or static remote: set means the device floods somewhere. */
    readonly group: string | null;
  } | null;
}

interface LinkJson {
  ifname: string;
  flags: string[];
  mtu: number;
  address: string;
  linkinfo?: {
    info_kind?: string;
    info_data?: {
      id?: number;
      port?: number;
      local?: string;
      local6?: string;
      link?: string;
      learning?: boolean;
      group?: string;
      group6?: string;
      remote?: string;
      remote6?: string;
    };
  };
}

function vni(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffff) throw new Error(`VNI ${n} is outside 0..16777215`);
  return n;
}
function port(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`UDP port ${n} is outside 1..65535`);
  return n;
}
function mtu(n: number): number {
  if (!Number.isInteger(n) || n < 68 || n > 65535) throw new Error(`MTU ${n} is outside 68..65535`);
  return n;
}

/** The link called `name`, or null when there is none. */
export async function getLink(ctx: KernelContext, name: string): Promise<LinkState | null> {
  vIfname(name);
  const all = await readJson<LinkJson>(ctx, ["ip", "-j", "-d", "link", "show"]);
  const l = all.find((x) => x.ifname === name);
  if (!l) return null;
  const d = l.linkinfo?.info_data;
  const kind = l.linkinfo?.info_kind ?? null;
  return {
    name: l.ifname,
    kind,
    mac: l.address.toLowerCase(),
    mtu: l.mtu,
    up: l.flags.includes("UP"),
    vxlan:
      kind === "vxlan" && d
        ? {
            vni: d.id ?? -1,
            port: d.port ?? 0,
            local: d.local ?? d.local6 ?? null,
            dev: d.link ?? null,
            learning: d.learning ?? true,
            group: d.group ?? d.group6 ?? d.remote ?? d.remote6 ?? null,
          }
        : null,
  };
}

/** Creates a VTEP with learning off and no group/remote: every peer comes from static FDB entries. */
export async function createVxlan(ctx: KernelContext, s: VxlanSpec): Promise<void> {
  await write(ctx, [
    "ip",
    "link",
    "add",
    vIfname(s.name),
    "mtu",
    String(mtu(s.mtu)),
    "address",
    vMac(s.mac),
    "type",
    "vxlan",
    "id",
    String(vni(s.vni)),
    "dstport",
    String(port(s.port)),
    "local",
    vIp(s.local),
    "dev",
    vIfname(s.dev),
    "nolearning",
  ]);
}

export async function deleteLink(ctx: KernelContext, name: string): Promise<void> {
  await write(ctx, ["ip", "link", "del", "dev", vIfname(name)]);
}

export async function setLinkUp(ctx: KernelContext, name: string): Promise<void> {
  await write(ctx, ["ip", "link", "set", "dev", vIfname(name), "up"]);
}

export async function setLinkMtu(ctx: KernelContext, name: string, value: number): Promise<void> {
  await write(ctx, ["ip", "link", "set", "dev", vIfname(name), "mtu", String(mtu(value))]);
}

export async function setLinkMac(ctx: KernelContext, name: string, value: string): Promise<void> {
  await write(ctx, ["ip", "link", "set", "dev", vIfname(name), "address", vMac(value)]);
}

/** Global-scope addresses on a link, as address/prefix text as the kernel prints them. */
export async function listGlobalAddresses(ctx: KernelContext, name: string): Promise<string[]> {
  const links = await readJson<{ addr_info?: { local: string; prefixlen: number; scope: string }[] }>(ctx, [
    "ip",
    "-j",
    "addr",
    "show",
    "dev",
    vIfname(name),
  ]);
  return links.flatMap((l) =>
    (l.addr_info ?? []).filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`),
  );
}

/** Adds an address (IPv6 without duplicate address detection: a VTEP address is unique by design). */
export async function addAddress(ctx: KernelContext, name: string, addr: string): Promise<void> {
  const v6 = vCidr(addr).includes(":");
  await write(ctx, ["ip", v6 ? "-6" : "-4", "addr", "add", addr, "dev", vIfname(name), ...(v6 ? ["nodad"] : [])]);
}

export async function delAddress(ctx: KernelContext, name: string, addr: string): Promise<void> {
  const v6 = vCidr(addr).includes(":");
  await write(ctx, ["ip", v6 ? "-6" : "-4", "addr", "del", addr, "dev", vIfname(name)]);
}

/** The offload feature whose checksums VXLAN got wrong (flannel#1279, calico#3145). */
export const TX_CSUM_FEATURE = "tx-checksum-ip-generic";

/** Whether generic tx checksum offload is on for a link; null when ethtool does not list it. */
export async function txChecksumOffload(ctx: KernelContext, name: string): Promise<boolean | null> {
  const out = await read(ctx, ["ethtool", "-k", vIfname(name)]);
  const m = new RegExp(`^\\s*${TX_CSUM_FEATURE}:\\s+(on|off)`, "m").exec(out);
  return m ? m[1] === "on" : null;
}

/** The offloads `weft status` shows for a device: checksum (the workaround's switch), TSO and GSO. */
export const SHOWN_OFFLOADS = [TX_CSUM_FEATURE, "tcp-segmentation-offload", "generic-segmentation-offload"] as const;

/** The SHOWN_OFFLOADS features of a link that ethtool lists, as on/off. */
export async function linkOffloads(ctx: KernelContext, name: string): Promise<Record<string, boolean>> {
  const out = await read(ctx, ["ethtool", "-k", vIfname(name)]);
  const res: Record<string, boolean> = {};
  for (const f of SHOWN_OFFLOADS) {
    const m = new RegExp(`^\\s*${f}:\\s+(on|off)`, "m").exec(out);
    if (m) res[f] = m[1] === "on";
  }
  return res;
}

export async function setTxChecksumOffload(ctx: KernelContext, name: string, on: boolean): Promise<void> {
  await write(ctx, ["ethtool", "-K", vIfname(name), TX_CSUM_FEATURE, on ? "on" : "off"]);
}

/**
 * weft's table that exempts the VXLAN outer packets from connection tracking. Any nft table with a
 * ct expression (weft's policy table) or a nat chain (masquerade) turns conntrack on for every
 * packet of the node's namespace, the tunnel's own UDP datagrams included; nothing needs state for
 * them (they are never NATed nor filtered by weft), so they skip it: policy and masquerade still
 * see the inner packets, which the VXLAN device hands to the stack as packets of their own.
 */
export const VXLAN_NOTRACK_TABLE = "weft_vxlan";

/** The whole table for UDP port `p` (replaced atomically; the comment records the port). */
export function renderVxlanNotrack(p: number): string {
  const udp = port(p);
  const t = VXLAN_NOTRACK_TABLE;
  return [
    `table inet ${t}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    `  comment "weft vxlan notrack udp ${udp}"`,
    `  chain prerouting {`,
    `    type filter hook prerouting priority raw; policy accept;`,
    `    udp dport ${udp} notrack comment "vxlan outer packets in"`,
    `  }`,
    `  chain output {`,
    `    type filter hook output priority raw; policy accept;`,
    `    udp dport ${udp} notrack comment "vxlan outer packets out"`,
    `  }`,
    `}`,
    "",
  ].join("\n");
}

function nftTarget(ctx: KernelContext): { netns?: string } {
  return ctx.netns === undefined ? {} : { netns: vNetnsPath(ctx.netns) };
}

/** The UDP port the notrack table is written for, or null when the table is absent. */
export async function vxlanNotrackPort(ctx: KernelContext): Promise<number | null> {
  const argv = ["nft", "list", "table", "inet", VXLAN_NOTRACK_TABLE];
  ctx.onCommand?.(argv, "read");
  const r = await runStatus(argv, nftTarget(ctx));
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new KernelCommandError(argv, r.code, r.stderr);
  }
  // Both chains must be there, with the port of the comment; anything else is rewritten.
  const m = /comment "weft vxlan notrack udp (\d+)"/.exec(r.stdout);
  const rules = r.stdout.match(/udp dport (\d+) notrack/g) ?? [];
  if (!m || rules.length !== 2 || !rules.every((x) => x === `udp dport ${m[1]} notrack`)) return -1;
  return Number(m[1]);
}

/** Makes the notrack table match port `p`; true when it had to be written. */
export async function ensureVxlanNotrack(ctx: KernelContext, p: number): Promise<boolean> {
  if ((await vxlanNotrackPort(ctx)) === port(p)) return false;
  const argv = ["nft", "-f", "-"];
  ctx.onCommand?.(argv, "write");
  await run(argv, { input: renderVxlanNotrack(p), ...nftTarget(ctx) });
  return true;
}

/** Removes the notrack table if present; true when it existed. */
export async function removeVxlanNotrack(ctx: KernelContext): Promise<boolean> {
  if ((await vxlanNotrackPort(ctx)) === null) return false;
  const t = VXLAN_NOTRACK_TABLE;
  const argv = ["nft", "-f", "-"];
  ctx.onCommand?.(argv, "write");
  await run(argv, { input: `table inet ${t}\ndelete table inet ${t}\n`, ...nftTarget(ctx) });
  return true;
}
