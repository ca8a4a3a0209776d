// Checks and normalizes the local node and the peer list before any backend plans kernel state:
// canonical addresses, one pod subnet per family, no duplicate names, no overlapping subnets.
// A bad peer is rejected with a message; it never stops the others.
import { BackendSetupError, type BackendData, type LocalNode, type PeerNode, type PeerStatus } from "../types.js";
import { cidrOrNull, cidrsOverlap, formatCidr, KERNEL_PREFIX, type Cidr } from "../../net/cidr.js";
import { formatIp, parseIp, type IpFamily as Family } from "../../net/ip.js";

export interface NodeView {
  readonly name: string;
  /** Canonical underlay address per family. */
  readonly underlay: ReadonlyMap<Family, string>;
  /** Pod subnet per family (host bits cleared). */
  readonly pods: ReadonlyMap<Family, Cidr>;
}

export interface PeerView extends NodeView {
  readonly data: BackendData;
}

const key = (f: Family): "ipv4" | "ipv6" => (f === 4 ? "ipv4" : "ipv6");
const FAMILIES: readonly Family[] = [4, 6];

function view(n: LocalNode, what: string): NodeView {
  if (typeof n.name !== "string" || n.name.length === 0) throw new Error(`${what} has no name`);
  const underlay = new Map<Family, string>();
  const pods = new Map<Family, Cidr>();
  for (const f of FAMILIES) {
    const u = n.underlay?.[key(f)];
    if (u !== undefined) {
      const a = parseIp(u);
      if (a?.family !== f) throw new Error(`${what} ${n.name}: underlay ${key(f)} "${u}" is not an IPv${f} address`);
      underlay.set(f, formatIp(a.family, a.value));
    }
    const p = n.podCIDRs?.[key(f)];
    if (p !== undefined) {
      const net = cidrOrNull(p, KERNEL_PREFIX);
      if (!net) throw new Error(`${what} ${n.name}: pod subnet "${p}" is not in CIDR notation`);
      if (net.family !== f) throw new Error(`${what} ${n.name}: pod subnet ${key(f)} "${p}" is not IPv${f}`);
      pods.set(f, net);
    }
  }
  if (underlay.size === 0) throw new Error(`${what} ${n.name} has no underlay address`);
  if (pods.size === 0) throw new Error(`${what} ${n.name} has no pod subnet`);
  return { name: n.name, underlay, pods };
}

export function localView(local: LocalNode): NodeView {
  try {
    return view(local, "local node");
  } catch (e) {
    throw new BackendSetupError((e as Error).message);
  }
}

export function rejected(name: string, message: string): PeerStatus {
  return { name, ok: false, paths: {}, errors: [message] };
}

/**
 * Valid peers in input order, and a status for each rejected one. `reserved` are subnets no pod
 * subnet may overlap (the underlay's own: routing a pod subnet there would cut the node off).
 */
export function peerViews(
  local: NodeView,
  peers: readonly PeerNode[],
  reserved: readonly Cidr[] = [],
): { valid: PeerView[]; rejected: PeerStatus[] } {
  const valid: PeerView[] = [];
  const bad: PeerStatus[] = [];
  const seen = new Set<string>();
  for (const p of peers) {
    const name = typeof p?.name === "string" && p.name ? p.name : "(unnamed)";
    if (name === local.name) continue;
    if (seen.has(name)) {
      bad.push(rejected(name, `peer ${name} is listed twice; only the first entry is used`));
      continue;
    }
    seen.add(name);
    let v: NodeView;
    try {
      v = view(p, "peer");
    } catch (e) {
      bad.push(rejected(name, (e as Error).message));
      continue;
    }
    const clash = [...v.pods.values()].flatMap((net) => {
      const own = local.pods.get(net.family);
      if (own && cidrsOverlap(own, net)) return [`overlaps this node's pod subnet ${formatCidr(own)}`];
      const under = reserved.find((r) => cidrsOverlap(r, net));
      if (under) return [`${formatCidr(net)} overlaps this node's underlay subnet ${formatCidr(under)}`];
      const other = valid.find((q) => {
        const n = q.pods.get(net.family);
        return n !== undefined && cidrsOverlap(n, net);
      });
      return other ? [`overlaps the pod subnet of peer ${other.name}`] : [];
    });
    if (clash.length > 0) {
      bad.push(rejected(name, `peer ${name}: pod subnet ${clash.join("; ")}; not routed`));
      continue;
    }
    valid.push({ ...v, data: p.backendData ?? {} });
  }
  return { valid, rejected: bad };
}
