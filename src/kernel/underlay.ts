// Read-only views of a node's underlay: which interface holds an address, its MTU, and the
// subnets connected to it (what host-gw needs to decide whether a peer is on the same L2 segment).
import { readJson, type KernelContext } from "./tracked.js";
import { ip as vIp, ifname as vIfname } from "./validate.js";

export interface InterfaceAddress {
  readonly dev: string;
  readonly family: 4 | 6;
  readonly address: string;
  readonly prefixLen: number;
  readonly scope: string;
}

interface IpAddrJson {
  ifname: string;
  mtu: number;
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
}

export async function listAddresses(ctx: KernelContext, dev?: string): Promise<InterfaceAddress[]> {
  const argv = dev === undefined ? ["ip", "-j", "addr", "show"] : ["ip", "-j", "addr", "show", "dev", vIfname(dev)];
  const links = await readJson<IpAddrJson>(ctx, argv);
  return links.flatMap((l) =>
    (l.addr_info ?? [])
      .filter((a) => a.family === "inet" || a.family === "inet6")
      .map((a) => ({
        dev: l.ifname,
        family: a.family === "inet" ? (4 as const) : (6 as const),
        address: a.local,
        prefixLen: a.prefixlen,
        scope: a.scope,
      })),
  );
}

export interface UnderlayInterface {
  readonly dev: string;
  readonly mtu: number;
  /** The interface's global addresses of the same family, as address/prefix. */
  readonly connected: readonly string[];
}

/** The interface that holds `address`, or null when no interface in the namespace does. */
export async function findUnderlay(ctx: KernelContext, address: string): Promise<UnderlayInterface | null> {
  vIp(address);
  const links = await readJson<IpAddrJson>(ctx, ["ip", "-j", "addr", "show"]);
  const want = address.toLowerCase();
  for (const l of links) {
    const infos = l.addr_info ?? [];
    const hit = infos.find((a) => a.local.toLowerCase() === want);
    if (!hit) continue;
    const connected = infos
      .filter((a) => a.family === hit.family && a.scope === "global")
      .map((a) => `${a.local}/${a.prefixlen}`);
    return { dev: l.ifname, mtu: l.mtu, connected };
  }
  return null;
}
