// Evaluates one packet against a CompiledModel the way the rendered nft ruleset does: the same
// sets, the same rules, the same group chains. explain() and the tests use it, so what they say
// is what the kernel will do with the model.
import { rangeContains } from "../net/cidr.js";
import { canonicalIp, parseIp } from "../net/ip.js";
import type { CompiledModel, CompiledRule, Direction, PolicyRef, Protocol, RulePeer, RulePort } from "./model.js";

export interface RuleMatch {
  policy: PolicyRef;
  direction: Direction;
  rule: number;
  counter: string;
}

export interface DirectionVerdict {
  direction: Direction;
  /** "ns/name" of the local pod whose side this is. */
  pod: string;
  isolated: boolean;
  allowed: boolean;
  /** The policies selecting the pod for this direction (empty when not isolated). */
  policies: PolicyRef[];
  /** Every rule that allows the packet (policies are additive: any one suffices). */
  allowedBy: RuleMatch[];
  /** Counter that counts the drop when denied. */
  denyCounter: string | null;
  reason: string;
}

export interface Packet {
  /** Address of the other end (source for ingress, destination for egress). */
  remote: string;
  /** Address of the local pod (destination for ingress, source for egress). */
  local: string;
  protocol: Protocol;
  port: number;
}

interface Index {
  pods: Map<string, Set<string>>;
  named: Map<string, Set<string>>;
}

const indexes = new WeakMap<CompiledModel, Index>();

function indexOf(model: CompiledModel): Index {
  let ix = indexes.get(model);
  if (!ix) {
    ix = {
      pods: new Map(model.podSets.map((s) => [s.id, new Set([...s.v4, ...s.v6])])),
      named: new Map(
        model.namedPortSets.map((s) => [s.id, new Set(s.elements.map((e) => `${e.addr}|${e.protocol}|${e.port}`))]),
      ),
    };
    indexes.set(model, ix);
  }
  return ix;
}

function peerMatches(model: CompiledModel, ix: Index, peer: RulePeer, addr: string): boolean {
  if (peer.kind === "any") return true;
  if (peer.kind === "pods") return ix.pods.get(peer.set)?.has(addr) ?? false;
  const set = model.cidrSets.find((c) => c.id === peer.set);
  const a = parseIp(addr);
  return !!set && !!a && set.ranges.some((r) => rangeContains(r, a));
}

function portMatches(ix: Index, port: RulePort, pkt: Packet, dstAddr: string): boolean {
  switch (port.kind) {
    case "any":
      return true;
    case "protocol":
      return port.protocol === pkt.protocol;
    case "ports":
      return port.protocol === pkt.protocol && port.ranges.some(([a, b]) => pkt.port >= a && pkt.port <= b);
    case "named":
      return (
        port.protocol === pkt.protocol &&
        (ix.named.get(port.set)?.has(`${dstAddr}|${pkt.protocol}|${pkt.port}`) ?? false)
      );
  }
}

export function ruleMatches(model: CompiledModel, rule: CompiledRule, pkt: Packet): boolean {
  const ix = indexOf(model);
  const dst = rule.direction === "ingress" ? pkt.local : pkt.remote;
  return (
    rule.peers.some((p) => peerMatches(model, ix, p, pkt.remote)) &&
    rule.ports.some((p) => portMatches(ix, p, pkt, dst))
  );
}

/** The verdict of this node's `direction` check for a packet of local pod `podKey`. */
export function evaluate(model: CompiledModel, direction: Direction, podKey: string, packet: Packet): DirectionVerdict {
  const pkt = {
    ...packet,
    remote: canonicalIp(packet.remote) ?? packet.remote,
    local: canonicalIp(packet.local) ?? packet.local,
  };
  const lp = model.localPods.find((p) => p.key === podKey);
  if (!lp) throw new Error(`pod ${podKey} is not local to node ${model.node}`);
  const side = lp[direction];
  if (!side.isolated || !side.group) {
    return {
      direction,
      pod: podKey,
      isolated: false,
      allowed: true,
      policies: [],
      allowedBy: [],
      denyCounter: null,
      reason: `no NetworkPolicy selects ${podKey} for ${direction}: not isolated, all allowed`,
    };
  }
  const group = model.groups.find((g) => g.id === side.group)!;
  const allowedBy: RuleMatch[] = [];
  for (const pid of group.policies) {
    const cp = model.policies.find((p) => p.id === pid)!;
    for (const rule of cp[direction]?.rules ?? []) {
      if (ruleMatches(model, rule, pkt))
        allowedBy.push({ policy: rule.policy, direction, rule: rule.index, counter: rule.counter });
    }
  }
  const names = side.policies.map((p) => `${p.namespace}/${p.name}`).join(", ");
  const allowed = allowedBy.length > 0;
  const reason = allowed
    ? `allowed by ${allowedBy.map((m) => `${m.policy.namespace}/${m.policy.name} ${direction}[${m.rule}]`).join(", ")}`
    : `isolated by ${names}; no ${direction} rule of theirs matches`;
  return {
    direction,
    pod: podKey,
    isolated: true,
    allowed,
    policies: side.policies,
    allowedBy,
    denyCounter: allowed ? null : group.denyCounter,
    reason,
  };
}
