// Permanent neighbour entries (IPv4 ARP / IPv6 ND) so a VTEP never has to resolve a peer.
import { readJson, write, type KernelContext } from "./tracked.js";
import { ifname as vIfname, ip as vIp, mac as vMac } from "./validate.js";

export interface NeighEntry {
  readonly ip: string;
  readonly mac: string;
}

interface NeighJson {
  dst: string;
  lladdr?: string;
  state?: string[];
}

export async function listPermanentNeigh(ctx: KernelContext, dev: string): Promise<NeighEntry[]> {
  const all = await readJson<NeighJson>(ctx, ["ip", "-j", "neigh", "show", "dev", vIfname(dev), "nud", "permanent"]);
  return all
    .filter((n) => n.lladdr !== undefined && (n.state ?? []).includes("PERMANENT"))
    .map((n) => ({ ip: n.dst, mac: (n.lladdr as string).toLowerCase() }));
}

// No -4/-6 flag: `ip -batch` lines cannot carry options; the address tells the family.
export function replaceNeighArgv(dev: string, n: NeighEntry): string[] {
  return ["ip", "neigh", "replace", vIp(n.ip), "lladdr", vMac(n.mac), "dev", vIfname(dev), "nud", "permanent"];
}

export function delNeighArgv(dev: string, ip: string): string[] {
  return ["ip", "neigh", "del", vIp(ip), "dev", vIfname(dev)];
}

export async function replaceNeigh(ctx: KernelContext, dev: string, n: NeighEntry): Promise<void> {
  await write(ctx, replaceNeighArgv(dev, n));
}

export async function delNeigh(ctx: KernelContext, dev: string, ip: string): Promise<void> {
  await write(ctx, delNeighArgv(dev, ip));
}
