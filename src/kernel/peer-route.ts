// Routes to other nodes' pod subnets. They carry their own route protocol number, so the set a
// backend owns can be listed and diffed without touching anyone else's routes.
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

interface RouteJson { dst: string; gateway?: string; dev?: string; flags?: string[] }

function proto(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 255) throw new Error(`route protocol ${n} is outside 1..255`);
  return String(n);
}

/** Main-table routes of one route protocol, both families. */
export async function listRoutes(ctx: KernelContext, protocol: number): Promise<PeerRoute[]> {
  const out: PeerRoute[] = [];
  for (const f of ["-4", "-6"]) {
    const rs = await readJson<RouteJson>(ctx, ["ip", "-j", f, "route", "show", "table", "main", "proto", proto(protocol)]);
    for (const r of rs) {
      const dst = r.dst.includes("/") ? r.dst : `${r.dst}/${f === "-4" ? 32 : 128}`;
      out.push({ dst, via: r.gateway ?? "", dev: r.dev ?? "", onlink: (r.flags ?? []).includes("onlink") });
    }
  }
  return out;
}

const fam = (c: string): string => (c.includes(":") ? "-6" : "-4");

export async function replaceRoute(ctx: KernelContext, r: PeerRoute, protocol: number): Promise<void> {
  await write(ctx, [
    "ip", fam(vCidr(r.dst)), "route", "replace", r.dst, "via", vIp(r.via), "dev", vIfname(r.dev),
    ...(r.onlink ? ["onlink"] : []), "proto", proto(protocol),
  ]);
}

export async function delRoute(ctx: KernelContext, dst: string, protocol: number): Promise<void> {
  await write(ctx, ["ip", fam(vCidr(dst)), "route", "del", dst, "table", "main", "proto", proto(protocol)]);
}
