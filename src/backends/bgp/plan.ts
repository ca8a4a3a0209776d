// From the BGP objects to what one node renders (a pure function, like render.ts): which mesh
// peers stay, which BGPPeer sessions this node opens (external routers, weft nodes by
// peerSelector in both directions, as Calico does), its AS, router id and route-reflector role,
// and, for `weft status`, why anything was left out.
import { peerSelectsNode, type BgpObjects, type BgpPeerConfig, nodeLabels } from "../../store/bgp-objects.js";
import { selectorMatches } from "../../k8s/index.js";
import { cidrOrNull, type Cidr } from "../../net/cidr.js";
import { parseIp, type IpFamily as Family } from "../../net/ip.js";
import { isPassive, type RenderNode, type RenderSession } from "./render.js";

export interface PlanNode extends RenderNode {
  readonly labels?: Readonly<Record<string, string>>;
}

export interface PlanInput {
  readonly local: PlanNode;
  /** The other nodes, every underlay family (peerSelector sessions may go multihop). */
  readonly nodes: readonly PlanNode[];
  /** The mesh's view of them: only the families reachable directly (render.ts renders these as mesh). */
  readonly meshNodes: readonly RenderNode[];
  readonly objects: BgpObjects;
  /** Whether an address of a family lies on one of this node's connected underlay subnets. */
  readonly connected: (family: Family, address: string) => boolean;
}

export interface Plan {
  readonly local: RenderNode;
  readonly meshPeers: readonly RenderNode[];
  readonly sessions: readonly RenderSession[];
  readonly announce: { readonly podCIDRs: boolean; readonly prefixes: readonly Cidr[] };
  readonly bfd: { readonly intervalMs: number; readonly multiplier: number };
  readonly rrClusterId?: string;
  /** BIRD protocol name -> whom it is for (weft status: peer = BGPPeer or node name). */
  readonly sessionPeers: ReadonlyMap<string, { peer: string; address: string }>;
  /** Messages for `weft status` (never with a password). */
  readonly problems: readonly string[];
}

const FAMILIES: readonly Family[] = [4, 6];
const addrName = (a: string) => a.replace(/[.:]/g, "_");

export function planBgp(input: PlanInput): Plan {
  const { objects } = input;
  const cfg = objects.config;
  const problems: string[] = [...objects.problems];
  const asOf = (name: string) => cfg.nodes.get(name)?.asNumber ?? cfg.asNumber;
  const rrOf = (name: string) => cfg.nodes.get(name)?.routeReflectorClusterId;
  const mine = cfg.nodes.get(input.local.name);
  const local: RenderNode = {
    ...input.local,
    asNumber: asOf(input.local.name),
    ...(mine?.routerId !== undefined ? { routerId: mine.routerId } : {}),
  };
  const localIsRR = rrOf(local.name) !== undefined;
  const sessions = new Map<string, RenderSession>();
  const sessionPeers = new Map<string, { peer: string; address: string }>();
  const inCluster = new Set<string>();

  const add = (x: RenderSession, peer: string, merge: boolean): void => {
    const had = sessions.get(x.name);
    if (had && !merge) {
      problems.push(`${x.why}: ${x.neighbor} already has a session (${sessionPeers.get(x.name)?.peer}): left out`);
      return;
    }
    sessions.set(
      x.name,
      had
        ? {
            ...had,
            bfd: had.bfd || x.bfd,
            rrClient: had.rrClient || x.rrClient,
            ...(had.password === undefined && x.password !== undefined ? { password: x.password } : {}),
          }
        : x,
    );
    if (!had) sessionPeers.set(x.name, { peer, address: x.neighbor });
  };

  for (const p of objects.peers) {
    if (p.peer.kind === "external") {
      if (!peerSelectsNode(p, local)) continue;
      const addr = p.peer.address;
      const f = parseIp(addr)?.family;
      const la = f ? local.underlay.get(f) : undefined;
      if (!f || la === undefined) {
        problems.push(`BGPPeer ${p.name}: this node has no IPv${f ?? "?"} underlay address to reach ${addr}: left out`);
        continue;
      }
      if (!input.connected(f, addr)) {
        problems.push(
          `BGPPeer ${p.name}: ${addr} is not on one of this node's underlay subnets (a BGPPeer's router must be): left out`,
        );
        continue;
      }
      add(
        {
          name: `peer_${addrName(addr)}`,
          why: `BGPPeer ${p.name}`,
          family: f,
          localAddress: la,
          neighbor: addr,
          neighborAs: p.peer.asNumber,
          multihop: false,
          passive: false,
          ...(p.password !== undefined ? { password: p.password } : {}),
          bfd: p.bfd,
          gracefulRestart: p.gracefulRestart,
          rrClient: false,
        },
        p.name,
        false,
      );
      continue;
    }
    // In-cluster: this node on the node side peers with the peerSelector's nodes, and the other
    // way round (each session exists on both of its ends).
    const peerSide = (n: PlanNode) => selectorMatches(p.peer.kind === "nodes" ? p.peer.selector : {}, nodeLabels(n));
    const targets = new Map<string, { node: PlanNode; rrAsked: boolean }>();
    if (peerSelectsNode(p, local))
      for (const n of input.nodes) if (peerSide(n)) targets.set(n.name, { node: n, rrAsked: p.routeReflectorClient });
    if (peerSide(local))
      for (const n of input.nodes)
        if (peerSelectsNode(p, n) && !targets.has(n.name)) targets.set(n.name, { node: n, rrAsked: false });
    for (const { node, rrAsked } of targets.values()) addNodeSessions(p, node, rrAsked);
  }

  function addNodeSessions(p: BgpPeerConfig, n: PlanNode, rrAsked: boolean): void {
    const theirAs = asOf(n.name);
    const ibgp = theirAs === local.asNumber;
    const rrClient = (rrAsked || (localIsRR && rrOf(n.name) === undefined)) && ibgp;
    if ((rrAsked || localIsRR) && !ibgp && rrAsked)
      problems.push(
        `BGPPeer ${p.name}: node ${n.name} (AS ${theirAs}) cannot be an rr client of this node (AS ${local.asNumber}): only iBGP peers can`,
      );
    for (const f of FAMILIES) {
      const la = local.underlay.get(f);
      const pa = n.underlay.get(f);
      if (la === undefined || pa === undefined) continue;
      if (!local.pods.has(f) && !n.pods.has(f)) continue;
      inCluster.add(n.name);
      add(
        {
          name: `node_${addrName(pa)}`,
          why: `node ${n.name} (BGPPeer ${p.name})`,
          family: f,
          localAddress: la,
          neighbor: pa,
          neighborAs: theirAs,
          multihop: !input.connected(f, pa),
          passive: isPassive(la, pa),
          ...(p.password !== undefined ? { password: p.password } : {}),
          bfd: p.bfd,
          gracefulRestart: p.gracefulRestart,
          rrClient,
        },
        n.name,
        true,
      );
    }
  }

  // The mesh, when on: every other node, except those a BGPPeer already peers with.
  const meshPeers = cfg.nodeToNodeMesh
    ? input.meshNodes.filter((n) => !inCluster.has(n.name)).map((n) => ({ ...n, asNumber: asOf(n.name) }))
    : [];
  const prefixes = cfg.prefixes.flatMap((p) => {
    const c = cidrOrNull(p);
    return c ? [c] : [];
  });
  const rr = rrOf(local.name);
  return {
    local,
    meshPeers,
    sessions: [...sessions.values()],
    announce: { podCIDRs: cfg.announcePodCIDRs, prefixes },
    bfd: cfg.bfd,
    ...(rr !== undefined ? { rrClusterId: rr } : {}),
    sessionPeers,
    problems,
  };
}
