// The local node's underlay per family, as the kernel sees it: which interface carries the
// node's address, its MTU, and the subnets connected there (who is reachable without a router).
import { findUnderlay } from "../../kernel/underlay.js";
import type { KernelContext } from "../../kernel/tracked.js";
import { BackendSetupError } from "../types.js";
import { cidrHas, cidrOrThrow, formatCidr, KERNEL_PREFIX, type Cidr } from "../../net/cidr.js";
import { ipOrThrow, type IpFamily as Family } from "../../net/ip.js";
import type { NodeView } from "./nodes.js";

export interface Underlay {
  readonly family: Family;
  readonly address: string;
  readonly dev: string;
  readonly mtu: number;
  readonly connected: readonly Cidr[];
}

export async function discoverUnderlay(ctx: KernelContext, node: NodeView, family: Family): Promise<Underlay> {
  const address = node.underlay.get(family);
  if (address === undefined) throw new BackendSetupError(`node ${node.name} has no IPv${family} underlay address`);
  const u = await findUnderlay(ctx, address);
  if (!u) {
    throw new BackendSetupError(
      `node ${node.name}: underlay address ${address} is not assigned to any interface here; check the node's InternalIP`,
    );
  }
  return { family, address, dev: u.dev, mtu: u.mtu, connected: u.connected.map((c) => cidrOrThrow(c, KERNEL_PREFIX)) };
}

/** Discovers every family the node has an underlay address for. */
export async function discoverAll(ctx: KernelContext, node: NodeView): Promise<Map<Family, Underlay>> {
  const out = new Map<Family, Underlay>();
  for (const f of node.underlay.keys()) out.set(f, await discoverUnderlay(ctx, node, f));
  return out;
}

/** Whether `peerAddress` is on a subnet connected to the underlay interface (same L2 segment). */
export function isDirect(u: Underlay, peerAddress: string): boolean {
  return u.connected.some((n) => cidrHas(n, ipOrThrow(peerAddress)));
}

export function describeConnected(u: Underlay): string {
  return `${u.connected.map(formatCidr).join(", ") || "none"} on ${u.dev}`;
}
