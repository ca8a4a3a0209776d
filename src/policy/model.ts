// The compiled ruleset model for one node: what compile() produces and what the nft renderer,
// the incremental updater and explain() consume. Everything the kernel needs is here, by name,
// so nothing downstream re-reads Kubernetes objects.
//
// Shape, in nft terms:
//   - peer sets (PodSet): addresses of the pods one distinct (namespaceSelector, podSelector) peer
//     selects, per family. Pod churn changes their elements, never the rules.
//   - CIDR sets (CidrSet): ipBlock cidr minus except, as disjoint ranges (interval sets).
//   - named-port sets (NamedPortSet): (pod address, protocol, port) for every pod with a container
//     port of that name, so a rule "port: http" resolves per destination pod in one lookup.
//   - one chain per policy and direction (its rules: peers x ports, each with a named counter),
//   - one chain per isolation group (the distinct set of policies selecting a local pod): jumps to
//     its policies' chains, then counts, logs (NFLOG) and drops,
//   - verdict maps keyed by local pod address -> jump to the pod's group chain.
import type { AddrRange } from "../net/cidr.js";
import type { IpFamily as Family } from "../net/ip.js";
import type { LabelSelector, Protocol } from "../k8s/types.js";

export type { Family, Protocol };
export type Direction = "ingress" | "egress";

export interface PolicyRef {
  namespace: string;
  name: string;
}

/** A pod on this node, as the agent knows it: its host-side veth and its addresses. */
export interface LocalPod {
  namespace: string;
  name: string;
  /** Host-side interface (the wf* veth); used for anti-spoofing. */
  ifname: string;
  ips: string[];
  /**
   * The pod's network namespace as the runtime named it (CNI_NETNS), if known: interfaces with
   * the same one belong to one pod even under different identities.
   */
  netns?: string;
}

export interface PodSet {
  id: string;
  /** Which pods: namespaces by selector (or the policy's own namespace) AND pods by selector. */
  namespaceSelector: LabelSelector | null;
  /** Set when namespaceSelector is null: the policy's namespace. */
  namespace: string | null;
  podSelector: LabelSelector | null;
  /** Readable description, e.g. "pods app=a in namespaces team=x". */
  description: string;
  /** "ns/name" of the member pods, sorted. */
  members: string[];
  v4: string[];
  v6: string[];
}

export interface CidrSet {
  id: string;
  family: Family;
  cidr: string;
  except: string[];
  ranges: AddrRange[];
}

export interface NamedPortElement {
  pod: string;
  addr: string;
  family: Family;
  protocol: Protocol;
  port: number;
}

export interface NamedPortSet {
  id: string;
  portName: string;
  elements: NamedPortElement[];
}

export type RulePeer = { kind: "any" } | { kind: "pods"; set: string } | { kind: "cidr"; set: string };

export type RulePort =
  | { kind: "any" }
  | { kind: "protocol"; protocol: Protocol }
  | { kind: "ports"; protocol: Protocol; ranges: Array<[number, number]> }
  | { kind: "named"; protocol: Protocol; name: string; set: string };

export interface CompiledRule {
  policy: PolicyRef;
  direction: Direction;
  /** Index in spec.ingress / spec.egress. */
  index: number;
  /** Named nft counter for packets this rule allows. */
  counter: string;
  /** OR of peers; [{kind:"any"}] when the rule has no from/to. */
  peers: RulePeer[];
  /** OR of ports; [{kind:"any"}] when the rule has no ports. */
  ports: RulePort[];
}

export interface CompiledPolicy {
  ref: PolicyRef;
  id: string;
  /** Chains per direction the policy applies to (policyTypes); absent = no effect that way. */
  ingress: { chain: string; rules: CompiledRule[] } | null;
  egress: { chain: string; rules: CompiledRule[] } | null;
  /** Local pods ("ns/name") it selects. */
  selects: string[];
}

export interface IsolationGroup {
  id: string;
  direction: Direction;
  chain: string;
  /** Policy ids, sorted; their chains are jumped to in order. */
  policies: string[];
  denyCounter: string;
  /** Local pods ("ns/name") in this group. */
  pods: string[];
}

export interface LocalPodPolicy {
  key: string;
  namespace: string;
  name: string;
  ifname: string;
  ips: string[];
  ingress: { isolated: boolean; group: string | null; policies: PolicyRef[] };
  egress: { isolated: boolean; group: string | null; policies: PolicyRef[] };
}

export type CounterInfo =
  | { name: string; kind: "allow"; direction: Direction; policy: PolicyRef; rule: number }
  | { name: string; kind: "deny"; direction: Direction; group: string; policies: PolicyRef[] }
  | { name: string; kind: "spoof" };

/**
 * A source address one pod veth may send although the host routes it back via another veth: the
 * address of a sibling interface of the same pod (a pod with several weft interfaces routes all
 * its traffic, whatever the source, out of its default route's interface).
 */
export interface SiblingSource {
  ifname: string;
  family: Family;
  addr: string;
}

export interface CompiledModel {
  node: string;
  localPods: LocalPodPolicy[];
  /** Only for pods with more than one local interface; sorted; empty for single-interface pods. */
  siblingSources: SiblingSource[];
  policies: CompiledPolicy[];
  groups: IsolationGroup[];
  podSets: PodSet[];
  cidrSets: CidrSet[];
  namedPortSets: NamedPortSet[];
  counters: CounterInfo[];
}

/**
 * Which set elements a pod-level change may have touched, from the incremental updater to the
 * renderer (renderModelChange): candidate elements of peer and named-port sets, each checked
 * against the models before and after. The local pods' verdict maps and sibling sets are small
 * and always compared whole.
 */
export interface ElementChange {
  podSets: Array<{ set: string; family: Family; addr: string }>;
  namedPorts: Array<{ set: string; element: NamedPortElement }>;
}
