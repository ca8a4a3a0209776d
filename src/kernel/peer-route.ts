// Routes to other nodes' pod subnets. They carry their own route protocol number, so the set a
// backend owns can be listed and diffed without touching anyone else's routes. The *Argv builders
// validate and return the command, for writeBatch().
import { readJson, write, type KernelContext } from "./tracked.js";
import { cidr as vCidr, ifname as vIfname, ip as vIp } from "./validate.js";

export interface PeerRoute {
  /** Destination address/prefix (a host route is printed by the kernel without /32 or /128). */
  readonly dst: string;
  readonly via: string;
  readonly dev: string;
  /** Gateway reachable on the device without a connected route (the VXLAN case). */
  readonly onlink: boolean;
}

interface RouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
}

function proto(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 255) throw new Error(`route protocol ${n} is outside 1..255`);
  return String(n);
}

/** Main-table routes of one route protocol, both families. */
export async function listRoutes(ctx: KernelContext, protocol: number): Promise<PeerRoute[]> {
  const out: PeerRoute[] = [];
  for (const f of ["-4", "-6"]) {
    const rs = await readJson<RouteJson>(ctx, [
      "ip",
      "-j",
      f,
      "route",
      "show",
      "table",
      "main",
      "proto",
      proto(protocol),
    ]);
    for (const r of rs) {
      const dst = r.dst.includes("/") ? r.dst : `${r.dst}/${f === "-4" ? 32 : 128}`;
      out.push({ dst, via: r.gateway ?? "", dev: r.dev ?? "", onlink: (r.flags ?? []).includes("onlink") });
    }
  }
  return out;
}

// No -4/-6 flag: `ip -batch` lines cannot carry options; the prefix tells the family.
export function replaceRouteArgv(r: PeerRoute, protocol: number): string[] {
  return [
    "ip",
    "route",
    "replace",
    vCidr(r.dst),
    "via",
    vIp(r.via),
    "dev",
    vIfname(r.dev),
    ...(r.onlink ? ["onlink"] : []),
    "proto",
    proto(protocol),
  ];
}

export function delRouteArgv(dst: string, protocol: number): string[] {
  return ["ip", "route", "del", vCidr(dst), "table", "main", "proto", proto(protocol)];
}

export async function replaceRoute(ctx: KernelContext, r: PeerRoute, protocol: number): Promise<void> {
  await write(ctx, replaceRouteArgv(r, protocol));
}

export async function delRoute(ctx: KernelContext, dst: string, protocol: number): Promise<void> {
  await write(ctx, delRouteArgv(dst, protocol));
}
