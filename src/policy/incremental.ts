// Incremental compile for pod churn: keeps a node's CompiledModel equal to compile(inputs) while
// pods come, go and change labels, without recompiling the cluster. Pure (no I/O).
//
// A pod event changes only elements when the set of compiled policies, peer sets, named-port sets
// and isolation groups stays the same; then the pod's old place is taken out of the peer and
// named-port sets it was in and its new place put in (a selector match per set: O(sets), not
// O(pods x sets)), and the local pods' part (which policies select them, their groups, verdict
// map entries, sibling sources: O(local pods)) is recomputed when a local pod is involved.
// Anything else (a policy would start or stop selecting local pods, a group would appear or
// empty, one pod with several local interfaces) returns null: recompile in full.
//
// Models returned are never mutated afterwards (touched sets are copied), so a caller may keep
// the one the kernel holds while trying the next.
import { namespaceLabels, NAMESPACE_NAME_LABEL } from "../k8s/defaults.js";
import { canonicalIp } from "../net/ip.js";
import { selectorMatches } from "../k8s/selector.js";
import type { NetworkPolicy, Pod, Protocol } from "../k8s/types.js";
import {
  compileWithPeers,
  localIpsByPod,
  localSiblingSources,
  peerInfo,
  podKey,
  policyRef,
  refKey,
  type CompileInput,
  type PodInfo,
} from "./compile.js";
import type {
  CompiledModel,
  CompiledPolicy,
  ElementChange,
  IsolationGroup,
  LocalPod,
  NamedPortElement,
  NamedPortSet,
  PodSet,
} from "./model.js";

export interface PodChanges {
  /** Pod objects changed since the last update, by "namespace/name"; null = deleted. */
  pods: ReadonlyMap<string, Pod | null>;
  /** Every local pod now (the whole list). */
  local: readonly LocalPod[];
  /** As CompileInput.sameNetns, now. */
  sameNetns?: ReadonlyArray<readonly string[]>;
}

export interface IncrementalResult {
  model: CompiledModel;
  change: ElementChange;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const nsOf = (key: string): string => key.slice(0, key.indexOf("/"));
/** compile() lists a peer set's members namespace by namespace, each in key order. */
const memberCmp = (a: string, b: string): number => cmp(nsOf(a), nsOf(b)) || cmp(a, b);

/** First index in `arr` (ordered so that `below` holds for a prefix) where `below` is false. */
function lowerBound<T>(arr: readonly T[], below: (e: T) => boolean): number {
  let lo = 0,
    hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (below(arr[mid])) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function insertSorted(arr: string[], x: string, c: (a: string, b: string) => number): void {
  arr.splice(
    lowerBound(arr, (e) => c(e, x) < 0),
    0,
    x,
  );
}

/** Removes one occurrence (addresses are a multiset: two pods may share one). */
function removeSorted(arr: string[], x: string, c: (a: string, b: string) => number): void {
  const i = lowerBound(arr, (e) => c(e, x) < 0);
  if (i < arr.length && arr[i] === x) arr.splice(i, 1);
}

const sameStrings = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

function samePeer(a: PodInfo | null, b: PodInfo | null): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.namespace === b.namespace &&
    sameStrings(a.v4, b.v4) &&
    sameStrings(a.v6, b.v6) &&
    JSON.stringify(a.labels) === JSON.stringify(b.labels) &&
    JSON.stringify(a.ports) === JSON.stringify(b.ports)
  );
}

function sameLocal(a: LocalPod | undefined, b: LocalPod | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.namespace === b.namespace &&
    a.name === b.name &&
    a.ifname === b.ifname &&
    a.netns === b.netns &&
    sameStrings(a.ips, b.ips)
  );
}

function namedElements(p: PodInfo, portName: string): NamedPortElement[] {
  const out: NamedPortElement[] = [];
  for (const cp of p.ports) {
    if (cp.name !== portName) continue;
    const protocol = (cp.protocol ?? "TCP") as Protocol;
    for (const addr of p.v4) out.push({ pod: p.key, addr, family: 4, protocol, port: cp.containerPort });
    for (const addr of p.v6) out.push({ pod: p.key, addr, family: 6, protocol, port: cp.containerPort });
  }
  return out;
}

export class IncrementalCompiler {
  private poisoned = false;
  private duplicates = false;

  private constructor(
    /** Labels of the listed namespaces (namespaces of pods not listed get the name label only). */
    private readonly nsLabels: ReadonlyMap<string, Record<string, string>>,
    /** Policies per namespace, in compile()'s order. */
    private readonly policiesByNs: ReadonlyMap<string, readonly NetworkPolicy[]>,
    private readonly pods: Map<string, Pod>,
    /** Pods that are peers (compile()'s active pods), by key. */
    private readonly peers: Map<string, PodInfo>,
    private local: LocalPod[],
    private sameNetns: string[][],
    private current: CompiledModel,
  ) {
    // The structure (policies, groups) is fixed for this compiler's life; only members move.
    for (const p of current.policies) this.policyByRef.set(refKey(p.ref), p.id);
    for (const g of current.groups) this.groupByPolicies.set(`${g.direction} ${g.policies.join(",")}`, g.id);
    for (const p of current.policies) {
      for (const k of p.selects) this.selectedBy.set(k, [...(this.selectedBy.get(k) ?? []), p.id]);
    }
  }

  /** Compiled policy id by "namespace/name" (policies that select some local pod). */
  private readonly policyByRef = new Map<string, string>();
  /** Group id by "direction policy-ids". */
  private readonly groupByPolicies = new Map<string, string>();
  /** Local pod key -> ids of the policies selecting it. */
  private readonly selectedBy = new Map<string, string[]>();

  /** Compiles `input` in full (as compile()) and keeps what later pod updates need. */
  static from(input: CompileInput): IncrementalCompiler {
    const { model, peers } = compileWithPeers(input);
    const nsLabels = new Map<string, Record<string, string>>();
    for (const ns of input.namespaces) nsLabels.set(ns.metadata.name, namespaceLabels(ns));
    const policiesByNs = new Map<string, NetworkPolicy[]>();
    for (const np of [...input.policies].sort((a, b) => (refKey(policyRef(a)) < refKey(policyRef(b)) ? -1 : 1))) {
      const ns = policyRef(np).namespace;
      policiesByNs.set(ns, [...(policiesByNs.get(ns) ?? []), np]);
    }
    const pods = new Map<string, Pod>();
    let unique = true;
    for (const p of input.pods) {
      const key = podKey(p.metadata.namespace ?? "default", p.metadata.name);
      if (pods.has(key)) unique = false;
      pods.set(key, p);
    }
    const c = new IncrementalCompiler(
      nsLabels,
      policiesByNs,
      pods,
      peers,
      [...input.local],
      (input.sameNetns ?? []).map((g) => [...g]),
      model,
    );
    // Two objects for one pod key (one without a namespace): compile() keeps both; updates cannot.
    c.duplicates = !unique;
    return c;
  }

  /** The model for the inputs as of the last successful update. */
  get model(): CompiledModel {
    return this.current;
  }

  /**
   * Applies pod-level changes. Returns the new model and the elements that may have changed, or
   * null when the change is structural (then this compiler is spent: build a new one with from()).
   */
  update(changes: PodChanges): IncrementalResult | null {
    if (this.poisoned)
      throw new Error("IncrementalCompiler: update() after a structural change; build a new one with from()");
    const r = this.tryUpdate(changes);
    if (r === null) this.poisoned = true;
    return r;
  }

  private tryUpdate(changes: PodChanges): IncrementalResult | null {
    if (this.duplicates) return null;
    const oldByKey = new Map<string, LocalPod>();
    for (const l of this.local) {
      const k = podKey(l.namespace, l.name);
      if (oldByKey.has(k)) return null; // one pod, several local interfaces: compile() decides their order
      oldByKey.set(k, l);
    }
    const newByKey = new Map<string, LocalPod>();
    for (const l of changes.local) {
      const k = podKey(l.namespace, l.name);
      if (newByKey.has(k)) return null;
      newByKey.set(k, l);
    }
    const localKeys = new Set<string>();
    for (const k of new Set([...oldByKey.keys(), ...newByKey.keys()]))
      if (!sameLocal(oldByKey.get(k), newByKey.get(k))) localKeys.add(k);
    const sameNetns = (changes.sameNetns ?? []).map((g) => [...g]);
    const netnsChanged = JSON.stringify(sameNetns) !== JSON.stringify(this.sameNetns);
    const affected = new Set([...changes.pods.keys(), ...localKeys]);

    // Inputs as of now.
    for (const [key, pod] of changes.pods) {
      if (pod) this.pods.set(key, pod);
      else this.pods.delete(key);
    }
    this.local = [...changes.local];
    this.sameNetns = sameNetns;

    const m = this.current;
    let localPart: Pick<CompiledModel, "localPods" | "policies" | "groups" | "siblingSources"> = m;
    const localAffected = [...affected].filter((k) => oldByKey.has(k) || newByKey.has(k));
    if (localAffected.length > 0 || netnsChanged) {
      const lp = this.localPart(localAffected, newByKey);
      if (lp === null) return null;
      localPart = lp;
    }

    // Peers: take each changed pod out of the sets it was in and put it where it belongs now.
    const change: ElementChange = { podSets: [], namedPorts: [] };
    const podSets = new Map<string, PodSet>();
    const portSets = new Map<string, NamedPortSet>();
    const localIps = localIpsByPod(this.local);
    for (const key of affected) {
      const before = this.peers.get(key) ?? null;
      const pod = this.pods.get(key);
      const after = pod ? peerInfo(pod, localIps.get(key) ?? []) : null;
      if (samePeer(before, after)) continue;
      if (after) this.peers.set(key, after);
      else this.peers.delete(key);
      for (const s0 of m.podSets) {
        const was = before !== null && this.selects(s0, before);
        const is = after !== null && this.selects(s0, after);
        if (!was && !is) continue;
        let s = podSets.get(s0.id);
        if (!s) {
          s = { ...s0, members: [...s0.members], v4: [...s0.v4], v6: [...s0.v6] };
          podSets.set(s.id, s);
        }
        for (const [info, add] of [
          [before, false],
          [after, true],
        ] as const) {
          if (!info || !(add ? is : was)) continue;
          (add ? insertSorted : removeSorted)(s.members, key, memberCmp);
          for (const [family, addrs] of [
            [4, info.v4],
            [6, info.v6],
          ] as const) {
            for (const addr of addrs) {
              (add ? insertSorted : removeSorted)(family === 4 ? s.v4 : s.v6, addr, cmp);
              change.podSets.push({ set: s.id, family, addr });
            }
          }
        }
      }
      for (const n0 of m.namedPortSets) {
        const gone = before ? namedElements(before, n0.portName) : [];
        const come = after ? namedElements(after, n0.portName) : [];
        if (gone.length + come.length === 0) continue;
        let n = portSets.get(n0.id);
        if (!n) {
          n = { ...n0, elements: [...n0.elements] };
          portSets.set(n.id, n);
        }
        // A pod's elements are one run, the runs in pod key order.
        const at = lowerBound(n.elements, (e) => e.pod < key);
        let end = at;
        while (end < n.elements.length && n.elements[end].pod === key) end++;
        n.elements.splice(at, end - at, ...come);
        for (const element of [...gone, ...come]) change.namedPorts.push({ set: n.id, element });
      }
    }

    this.current = {
      ...m,
      ...localPart,
      podSets: podSets.size ? m.podSets.map((s) => podSets.get(s.id) ?? s) : m.podSets,
      namedPortSets: portSets.size ? m.namedPortSets.map((s) => portSets.get(s.id) ?? s) : m.namedPortSets,
    };
    return { model: this.current, change };
  }

  private nsLabelsOf(ns: string): Record<string, string> {
    return this.nsLabels.get(ns) ?? { [NAMESPACE_NAME_LABEL]: ns };
  }

  /** Whether compile() would make the pod a member of the peer set. */
  private selects(s: PodSet, p: PodInfo): boolean {
    if (
      s.namespaceSelector
        ? !selectorMatches(s.namespaceSelector, this.nsLabelsOf(p.namespace))
        : p.namespace !== s.namespace
    )
      return false;
    return !s.podSelector || selectorMatches(s.podSelector, p.labels);
  }

  /**
   * The local pods' part of the model with the `keys` pods' selection redone (O(keys x their
   * namespace's policies)), or null when that needs a policy or group the model does not have,
   * or leaves one without pods.
   */
  private localPart(
    keys: readonly string[],
    byKey: ReadonlyMap<string, LocalPod>,
  ): Pick<CompiledModel, "localPods" | "policies" | "groups" | "siblingSources"> | null {
    const m = this.current;
    const localPods = [...m.localPods];
    // Copies of the policies and groups whose pod lists change, by id.
    const policies = new Map<string, CompiledPolicy>();
    const groups = new Map<string, IsolationGroup>();
    const policyIdx = new Map(m.policies.map((p, i) => [p.id, i]));
    const groupIdx = new Map(m.groups.map((g, i) => [g.id, i]));
    const policy = (id: string) => {
      let p = policies.get(id);
      if (!p)
        policies.set(
          id,
          (p = { ...m.policies[policyIdx.get(id)!], selects: [...m.policies[policyIdx.get(id)!].selects] }),
        );
      return p;
    };
    const group = (id: string) => {
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { ...m.groups[groupIdx.get(id)!], pods: [...m.groups[groupIdx.get(id)!].pods] }));
      return g;
    };
    const at = (key: string) => lowerBound(localPods, (p) => p.key < key);
    for (const key of keys) {
      // Out of where it was...
      for (const id of this.selectedBy.get(key) ?? []) removeSorted(policy(id).selects, key, cmp);
      this.selectedBy.delete(key);
      const i = at(key);
      if (i < localPods.length && localPods[i].key === key) {
        const old = localPods[i];
        for (const g of [old.ingress.group, old.egress.group]) if (g !== null) removeSorted(group(g).pods, key, cmp);
        localPods.splice(i, 1);
      }
      // ...and into where it belongs now.
      const lp = byKey.get(key);
      if (!lp) continue;
      const labels = this.pods.get(key)?.metadata.labels ?? {};
      const cps: CompiledPolicy[] = [];
      for (const np of this.policiesByNs.get(lp.namespace) ?? []) {
        if (!selectorMatches(np.spec.podSelector ?? {}, labels)) continue;
        const id = this.policyByRef.get(refKey(policyRef(np)));
        if (id === undefined) return null; // a policy that selected no local pod so far: new chains and sets
        const cp = policy(id);
        insertSorted(cp.selects, key, cmp);
        cps.push(cp);
      }
      this.selectedBy.set(
        key,
        cps.map((c) => c.id),
      );
      const dir = (direction: "ingress" | "egress") => {
        const ps = cps.filter((c) => c[direction] !== null);
        if (ps.length === 0) return { isolated: false, group: null, policies: [] };
        const g = this.groupByPolicies.get(
          `${direction} ${ps
            .map((p) => p.id)
            .sort()
            .join(",")}`,
        );
        if (g === undefined) return undefined; // a new group: a new chain and counter
        insertSorted(group(g).pods, key, cmp);
        return { isolated: true, group: g, policies: ps.map((c) => c.ref) };
      };
      const ingress = dir("ingress");
      const egress = dir("egress");
      if (!ingress || !egress) return null;
      const ips = lp.ips.map((a) => canonicalIp(a)).filter((a): a is string => a !== null);
      localPods.splice(at(key), 0, {
        key,
        namespace: lp.namespace,
        name: lp.name,
        ifname: lp.ifname,
        ips,
        ingress,
        egress,
      });
    }
    // A policy or group left without local pods would vanish from a full compile.
    if (
      [...policies.values()].some((p) => p.selects.length === 0) ||
      [...groups.values()].some((g) => g.pods.length === 0)
    )
      return null;
    const sorted = [...byKey.values()].sort((a, b) => cmp(podKey(a.namespace, a.name), podKey(b.namespace, b.name)));
    return {
      localPods,
      policies: policies.size ? m.policies.map((p) => policies.get(p.id) ?? p) : m.policies,
      groups: groups.size ? m.groups.map((g) => groups.get(g.id) ?? g) : m.groups,
      siblingSources: localSiblingSources(localPods, sorted, this.sameNetns),
    };
  }
}
