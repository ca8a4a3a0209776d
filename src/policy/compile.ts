// compile(): Kubernetes objects + this node's pods -> the node's CompiledModel. Pure.
//
// Each node enforces egress of its local pods (packets in from their veths) and ingress of its
// local pods (packets out to their veths); a connection between two pods thus passes the source
// node's egress check and the destination node's ingress check, wherever they run.
import { createHash } from "node:crypto";
import { cidrMinus, cidrOrNull, formatCidr } from "../net/cidr.js";
import { canonicalIp, formatIp, parseIp } from "../net/ip.js";
import { effectivePolicyTypes, namespaceLabels, NAMESPACE_NAME_LABEL, portProtocol } from "../k8s/defaults.js";
import { selectorIsEmpty, selectorKey, selectorMatches, selectorString } from "../k8s/selector.js";
import type {
  ContainerPort,
  Namespace,
  NetworkPolicy,
  NetworkPolicyPeer,
  NetworkPolicyPort,
  Pod,
  Protocol,
} from "../k8s/types.js";
import type {
  CidrSet,
  CompiledModel,
  CompiledPolicy,
  CompiledRule,
  CounterInfo,
  Direction,
  IsolationGroup,
  LocalPod,
  LocalPodPolicy,
  NamedPortSet,
  PodSet,
  PolicyRef,
  RulePeer,
  RulePort,
  SiblingSource,
} from "./model.js";

export interface CompileInput {
  namespaces: readonly Namespace[];
  pods: readonly Pod[];
  policies: readonly NetworkPolicy[];
  node: string;
  /** The pods running on this node with their veths and addresses. */
  local: readonly LocalPod[];
  /**
   * Host interfaces known to lead into one network namespace (e.g. read from the kernel), in
   * addition to the interfaces of one pod (same namespace/name), which always count as siblings.
   */
  sameNetns?: ReadonlyArray<readonly string[]>;
}

/** Short, stable identifier for nft object names (nft identifiers allow no '-' or '/'). */
export function shortId(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

export function podKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** A pod as a policy peer: what compile() reads of it (exported for the incremental updater). */
export interface PodInfo {
  key: string;
  namespace: string;
  labels: Record<string, string>;
  v4: string[];
  v6: string[];
  ports: ContainerPort[];
}

/** The pod's addresses (status.podIPs, else status.podIP), canonical and split by family. */
export function podAddresses(pod: Pod, extra: readonly string[] = []): { v4: string[]; v6: string[] } {
  const raw = [
    ...(pod.status?.podIPs?.map((p) => p.ip) ?? []),
    ...(pod.status?.podIP ? [pod.status.podIP] : []),
    ...extra,
  ];
  const v4 = new Set<string>(),
    v6 = new Set<string>();
  for (const r of raw) {
    const p = parseIp(r);
    if (!p) continue;
    (p.family === 4 ? v4 : v6).add(formatIp(p.family, p.value));
  }
  return { v4: [...v4].sort(), v6: [...v6].sort() };
}

/**
 * The pod as a peer, or null when it can be none: host-network, finished, or without an address.
 * `localIps`: the addresses this node gave it (the last local interface of that pod).
 */
export function peerInfo(pod: Pod, localIps: readonly string[] = []): PodInfo | null {
  const ns = pod.metadata.namespace ?? "default";
  if (pod.spec.hostNetwork) return null;
  const phase = pod.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") return null;
  const { v4, v6 } = podAddresses(pod, localIps);
  if (v4.length + v6.length === 0) return null;
  return {
    key: podKey(ns, pod.metadata.name),
    namespace: ns,
    labels: pod.metadata.labels ?? {},
    v4,
    v6,
    ports: pod.spec.containers.flatMap((c) => c.ports ?? []),
  };
}

/** Local addresses by pod key, as compile() adds them to the pods' own (the last interface wins). */
export function localIpsByPod(local: readonly LocalPod[]): Map<string, string[]> {
  return new Map(local.map((l) => [podKey(l.namespace, l.name), l.ips]));
}

/** Pods that can be policy peers, sorted by key. */
function activePods(pods: readonly Pod[], local: readonly LocalPod[]): PodInfo[] {
  const localIps = localIpsByPod(local);
  const out: PodInfo[] = [];
  for (const pod of pods) {
    const info = peerInfo(pod, localIps.get(podKey(pod.metadata.namespace ?? "default", pod.metadata.name)) ?? []);
    if (info) out.push(info);
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * Whether a pod with these labels in this namespace is isolated (ingress or egress) by any of the
 * policies: the same selection compile() makes, for one pod, without compiling anything. A pod
 * without an object has no labels (as in compile()).
 */
export function podIsolated(
  namespace: string,
  labels: Readonly<Record<string, string>>,
  policies: readonly NetworkPolicy[],
): boolean {
  return policies.some(
    (np) =>
      (np.metadata.namespace ?? "default") === namespace &&
      selectorMatches(np.spec.podSelector ?? {}, labels) &&
      effectivePolicyTypes(np).length > 0,
  );
}

export const policyRef = (np: NetworkPolicy): PolicyRef => ({
  namespace: np.metadata.namespace ?? "default",
  name: np.metadata.name,
});
export const refKey = (r: PolicyRef) => podKey(r.namespace, r.name);

export function compile(input: CompileInput): CompiledModel {
  return compileWithPeers(input).model;
}

/** compile(), and the pods it took as peers (by key: for the incremental updater). */
export function compileWithPeers(input: CompileInput): { model: CompiledModel; peers: Map<string, PodInfo> } {
  const nsLabels = new Map<string, Record<string, string>>();
  for (const ns of input.namespaces) nsLabels.set(ns.metadata.name, namespaceLabels(ns));
  const pods = activePods(input.pods, input.local);
  // Pods in namespaces not (yet) listed still carry the automatic name label.
  for (const p of pods)
    if (!nsLabels.has(p.namespace)) nsLabels.set(p.namespace, { [NAMESPACE_NAME_LABEL]: p.namespace });
  const podsByNs = new Map<string, PodInfo[]>();
  for (const p of pods) {
    const l = podsByNs.get(p.namespace) ?? [];
    l.push(p);
    podsByNs.set(p.namespace, l);
  }
  const allLabels = new Map<string, Record<string, string>>();
  for (const pod of input.pods)
    allLabels.set(podKey(pod.metadata.namespace ?? "default", pod.metadata.name), pod.metadata.labels ?? {});

  // Which policies select which local pods (a policy only selects pods in its own namespace).
  const policies = [...input.policies].sort((a, b) => (refKey(policyRef(a)) < refKey(policyRef(b)) ? -1 : 1));
  const local = [...input.local].sort((a, b) => (podKey(a.namespace, a.name) < podKey(b.namespace, b.name) ? -1 : 1));
  const selecting = new Map<string, NetworkPolicy[]>();
  const policiesByNs = new Map<string, NetworkPolicy[]>();
  for (const np of policies) {
    const ns = policyRef(np).namespace;
    const l = policiesByNs.get(ns) ?? [];
    l.push(np);
    policiesByNs.set(ns, l);
  }
  for (const lp of local) {
    const key = podKey(lp.namespace, lp.name);
    const labels = allLabels.get(key) ?? {};
    selecting.set(
      key,
      (policiesByNs.get(lp.namespace) ?? []).filter((np) => selectorMatches(np.spec.podSelector ?? {}, labels)),
    );
  }

  const podSets = new Map<string, PodSet>();
  const cidrSets = new Map<string, CidrSet>();
  const namedPortSets = new Map<string, NamedPortSet>();
  const counters: CounterInfo[] = [];

  const podSetFor = (policyNs: string, peer: NetworkPolicyPeer): string => {
    const nsSel = peer.namespaceSelector ?? null;
    const podSel = peer.podSelector ?? null;
    const nsPart = nsSel ? `nssel:${selectorKey(nsSel)}` : `ns:${policyNs}`;
    const key = `${nsPart}|pods:${podSel ? selectorKey(podSel) : "*"}`;
    const id = `s_${shortId(key)}`;
    if (podSets.has(id)) return id;
    const namespaces = nsSel ? [...nsLabels].filter(([, l]) => selectorMatches(nsSel, l)).map(([n]) => n) : [policyNs];
    const members: PodInfo[] = [];
    for (const ns of namespaces.sort()) {
      for (const p of podsByNs.get(ns) ?? []) if (!podSel || selectorMatches(podSel, p.labels)) members.push(p);
    }
    const podDesc = podSel ? (selectorIsEmpty(podSel) ? "all pods" : `pods ${selectorString(podSel)}`) : "all pods";
    const nsDesc = nsSel
      ? selectorIsEmpty(nsSel)
        ? "in all namespaces"
        : `in namespaces ${selectorString(nsSel)}`
      : `in namespace ${policyNs}`;
    podSets.set(id, {
      id,
      namespaceSelector: nsSel,
      namespace: nsSel ? null : policyNs,
      podSelector: podSel,
      description: `${podDesc} ${nsDesc}`,
      members: members.map((m) => m.key),
      v4: members.flatMap((m) => m.v4).sort(),
      v6: members.flatMap((m) => m.v6).sort(),
    });
    return id;
  };

  const cidrSetFor = (cidr: string, except: readonly string[]): string | null => {
    const c = cidrOrNull(cidr, { hostBits: "clear" });
    if (!c) return null; // validation rejects these; never widen a rule because of bad input
    const ex = except
      .map((x) => cidrOrNull(x, { hostBits: "clear" }))
      .filter((e): e is NonNullable<typeof e> => e !== null);
    const norm = formatCidr;
    const key = `${norm(c)} except ${ex.map(norm).sort().join(",")}`;
    const id = `b_${shortId(key)}`;
    if (!cidrSets.has(id)) {
      cidrSets.set(id, { id, family: c.family, cidr: norm(c), except: ex.map(norm).sort(), ranges: cidrMinus(c, ex) });
    }
    return id;
  };

  const namedPortSetFor = (name: string): string => {
    const id = `n_${shortId(`port:${name}`)}`;
    if (!namedPortSets.has(id)) {
      const elements: NamedPortSet["elements"] = [];
      for (const p of pods) {
        for (const cp of p.ports) {
          if (cp.name !== name) continue;
          const protocol = (cp.protocol ?? "TCP") as Protocol;
          for (const addr of p.v4) elements.push({ pod: p.key, addr, family: 4, protocol, port: cp.containerPort });
          for (const addr of p.v6) elements.push({ pod: p.key, addr, family: 6, protocol, port: cp.containerPort });
        }
      }
      namedPortSets.set(id, { id, portName: name, elements });
    }
    return id;
  };

  const compilePorts = (ports: readonly NetworkPolicyPort[] | undefined): RulePort[] => {
    if (!ports || ports.length === 0) return [{ kind: "any" }];
    const wholeProto = new Set<Protocol>();
    const numeric = new Map<Protocol, Array<[number, number]>>();
    const named: RulePort[] = [];
    const seenNamed = new Set<string>();
    for (const p of ports) {
      const protocol = portProtocol(p);
      if (p.port === undefined) wholeProto.add(protocol);
      else if (typeof p.port === "number") {
        const l = numeric.get(protocol) ?? [];
        l.push([p.port, p.endPort ?? p.port]);
        numeric.set(protocol, l);
      } else if (!seenNamed.has(`${protocol}/${p.port}`)) {
        seenNamed.add(`${protocol}/${p.port}`);
        named.push({ kind: "named", protocol, name: p.port, set: namedPortSetFor(p.port) });
      }
    }
    const out: RulePort[] = [];
    for (const protocol of ["TCP", "UDP", "SCTP"] as const) {
      if (wholeProto.has(protocol)) out.push({ kind: "protocol", protocol });
      else if (numeric.has(protocol))
        out.push({ kind: "ports", protocol, ranges: mergeRanges(numeric.get(protocol)!) });
    }
    // A named port of a protocol already wholly allowed adds nothing.
    return [...out, ...named.filter((n) => n.kind === "named" && !wholeProto.has(n.protocol))];
  };

  const compilePeers = (policyNs: string, peers: readonly NetworkPolicyPeer[] | undefined): RulePeer[] => {
    if (!peers || peers.length === 0) return [{ kind: "any" }];
    const out: RulePeer[] = [];
    const seen = new Set<string>();
    for (const peer of peers) {
      let rp: RulePeer | null;
      if (peer.ipBlock) {
        const set = cidrSetFor(peer.ipBlock.cidr, peer.ipBlock.except ?? []);
        rp = set ? { kind: "cidr", set } : null;
      } else if (peer.podSelector || peer.namespaceSelector) rp = { kind: "pods", set: podSetFor(policyNs, peer) };
      else rp = null; // an empty peer is invalid (apiserver: "must specify a peer"); it allows nothing
      if (rp && !seen.has(rp.set)) {
        seen.add(rp.set);
        out.push(rp);
      }
    }
    return out;
  };

  const compiled = new Map<string, CompiledPolicy>();
  const compilePolicy = (np: NetworkPolicy): CompiledPolicy => {
    const ref = policyRef(np);
    const id = shortId(`policy:${refKey(ref)}`);
    const existing = compiled.get(id);
    if (existing) return existing;
    const types = effectivePolicyTypes(np);
    const rules = (direction: Direction): CompiledRule[] => {
      const specRules = (direction === "ingress" ? np.spec.ingress : np.spec.egress) ?? [];
      return specRules.map((r, index) => {
        const counter = `c${direction === "ingress" ? "i" : "e"}_${id}_${index}`;
        counters.push({ name: counter, kind: "allow", direction, policy: ref, rule: index });
        const peers = direction === "ingress" ? np.spec.ingress?.[index]?.from : np.spec.egress?.[index]?.to;
        return {
          policy: ref,
          direction,
          index,
          counter,
          peers: compilePeers(ref.namespace, peers),
          ports: compilePorts(r.ports),
        };
      });
    };
    const cp: CompiledPolicy = {
      ref,
      id,
      ingress: types.includes("Ingress") ? { chain: `pi_${id}`, rules: rules("ingress") } : null,
      egress: types.includes("Egress") ? { chain: `pe_${id}`, rules: rules("egress") } : null,
      selects: [],
    };
    compiled.set(id, cp);
    return cp;
  };

  const groups = new Map<string, IsolationGroup>();
  const groupFor = (direction: Direction, ps: CompiledPolicy[], pod: string): string | null => {
    if (ps.length === 0) return null;
    const ids = ps.map((p) => p.id).sort();
    const gid = `g${direction === "ingress" ? "i" : "e"}_${shortId(ids.join(","))}`;
    let g = groups.get(gid);
    if (!g) {
      g = { id: gid, direction, chain: gid, policies: ids, denyCounter: `d${gid.slice(1)}`, pods: [] };
      groups.set(gid, g);
      counters.push({ name: g.denyCounter, kind: "deny", direction, group: gid, policies: ps.map((p) => p.ref) });
    }
    g.pods.push(pod);
    return gid;
  };

  const localPods: LocalPodPolicy[] = local.map((lp) => {
    const key = podKey(lp.namespace, lp.name);
    const cps = (selecting.get(key) ?? []).map(compilePolicy);
    for (const cp of cps) cp.selects.push(key);
    const ing = cps.filter((c) => c.ingress !== null);
    const eg = cps.filter((c) => c.egress !== null);
    const ips = lp.ips.map((i) => canonicalIp(i)).filter((i): i is string => i !== null);
    return {
      key,
      namespace: lp.namespace,
      name: lp.name,
      ifname: lp.ifname,
      ips,
      ingress: { isolated: ing.length > 0, group: groupFor("ingress", ing, key), policies: ing.map((c) => c.ref) },
      egress: { isolated: eg.length > 0, group: groupFor("egress", eg, key), policies: eg.map((c) => c.ref) },
    };
  });

  counters.push({ name: "spoofed", kind: "spoof" });
  const siblingSources = localSiblingSources(localPods, local, input.sameNetns ?? []);
  const byId = <T extends { id: string }>(m: Map<string, T>) =>
    [...m.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const model: CompiledModel = {
    node: input.node,
    localPods,
    siblingSources,
    policies: [...compiled.values()].sort((a, b) => (refKey(a.ref) < refKey(b.ref) ? -1 : 1)),
    groups: byId(groups),
    podSets: byId(podSets),
    cidrSets: byId(cidrSets),
    namedPortSets: byId(namedPortSets),
    counters: counters.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  };
  return { model, peers: new Map(pods.map((p) => [p.key, p])) };
}

/** Sibling sources of the local pods: interfaces of one pod are found by identity and netns. */
export function localSiblingSources(
  localPods: readonly LocalPodPolicy[],
  local: readonly LocalPod[],
  sameNetns: ReadonlyArray<readonly string[]>,
): SiblingSource[] {
  // One pod's interfaces: same namespace/name in the same network namespace (a re-created pod's
  // new sandbox is another one until the old one's DEL), or the same network namespace.
  const together = new Map<string, string[]>();
  const join = (k: string, ifname: string) => together.set(k, [...(together.get(k) ?? []), ifname]);
  for (const lp of local) {
    join(`pod\0${podKey(lp.namespace, lp.name)}\0${lp.netns ?? ""}`, lp.ifname);
    if (lp.netns) join(`netns\0${lp.netns}`, lp.ifname);
  }
  return siblingSourcesOf(localPods, [...sameNetns, ...together.values()]);
}

/**
 * Each interface of a multi-interface pod may send the addresses of the pod's other interfaces.
 * `together`: groups of host interfaces that lead into one pod.
 */
function siblingSourcesOf(
  localPods: readonly LocalPodPolicy[],
  together: ReadonlyArray<readonly string[]>,
): SiblingSource[] {
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    let r = x;
    while (parent.get(r) !== undefined && parent.get(r) !== r) r = parent.get(r)!;
    parent.set(x, r);
    return r;
  };
  const union = (a: string, b: string) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent.set(ra, rb);
  };
  const known = new Set(localPods.map((p) => p.ifname));
  for (const p of localPods) find(p.ifname);
  for (const g of together) {
    const ifs = g.filter((i) => known.has(i));
    for (let i = 1; i < ifs.length; i++) union(ifs[0], ifs[i]);
  }
  const groups = new Map<string, LocalPodPolicy[]>();
  for (const p of localPods) {
    const r = find(p.ifname);
    groups.set(r, [...(groups.get(r) ?? []), p]);
  }
  const out = new Map<string, SiblingSource>();
  for (const members of groups.values()) {
    if (new Set(members.map((m) => m.ifname)).size < 2) continue;
    for (const m of members) {
      for (const o of members) {
        if (o.ifname === m.ifname) continue;
        for (const addr of o.ips) {
          if (m.ips.includes(addr)) continue;
          out.set(`${m.ifname} ${addr}`, { ifname: m.ifname, family: addr.includes(":") ? 6 : 4, addr });
        }
      }
    }
  }
  return [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
}

function mergeRanges(ranges: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** LocalPods for a node from Pod objects alone (for explain and tests; ifname is synthesized). */
export function localPodsFromCluster(pods: readonly Pod[], node: string): LocalPod[] {
  return pods
    .filter((p) => p.spec.nodeName === node && !p.spec.hostNetwork)
    .map((p) => {
      const ns = p.metadata.namespace ?? "default";
      const { v4, v6 } = podAddresses(p);
      return {
        namespace: ns,
        name: p.metadata.name,
        ifname: `wf${shortId(podKey(ns, p.metadata.name)).slice(0, 11)}`,
        ips: [...v4, ...v6],
      };
    });
}
