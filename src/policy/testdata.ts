// The upstream netpol e2e layout (test/e2e/network/netpol): namespaces x, y, z, each with pods
// a, b, c serving ports 80 and 81 over TCP and UDP (named serve-80-tcp, ...), spread over two
// nodes, dual-stack. Used by the policy unit and kernel tests.
import type {
  LabelSelector,
  Namespace,
  NetworkPolicy,
  NetworkPolicyPeer,
  NetworkPolicyPort,
  Pod,
} from "../k8s/types.js";
import type { LocalPod } from "./model.js";
import { compile, localPodsFromCluster } from "./compile.js";
import { evaluate } from "./evaluate.js";
import type { CompiledModel, Protocol } from "./model.js";

export const NAMESPACES = ["x", "y", "z"] as const;
export const PODS = ["a", "b", "c"] as const;
export const NODES = ["node1", "node2"] as const;

export function namespaces(): Namespace[] {
  return NAMESPACES.map((n) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name: n, labels: { ns: n } } }));
}

export function podAddr(ns: string, pod: string, family: 4 | 6 = 4): string {
  const i = NAMESPACES.indexOf(ns as (typeof NAMESPACES)[number]) + 1;
  const j = PODS.indexOf(pod as (typeof PODS)[number]) + 1;
  return family === 4 ? `10.244.${i}.${j}` : `fd00:10:244:${i}::${j}`;
}

export function pods(): Pod[] {
  const out: Pod[] = [];
  for (const ns of NAMESPACES) {
    for (const [j, p] of PODS.entries()) {
      out.push({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: p, namespace: ns, labels: { pod: p } },
        spec: {
          nodeName: NODES[j % 2],
          containers: [80, 81].flatMap((port) =>
            (["TCP", "UDP"] as const).map((proto) => ({
              name: `cont-${port}-${proto.toLowerCase()}`,
              ports: [{ name: `serve-${port}-${proto.toLowerCase()}`, containerPort: port, protocol: proto }],
            })),
          ),
        },
        status: {
          phase: "Running",
          podIP: podAddr(ns, p),
          podIPs: [{ ip: podAddr(ns, p) }, { ip: podAddr(ns, p, 6) }],
          hostIP: "192.168.0.1",
        },
      });
    }
  }
  return out;
}

export const ALL = NAMESPACES.flatMap((ns) => PODS.map((p) => `${ns}/${p}`));

export function policy(ns: string, name: string, spec: NetworkPolicy["spec"]): NetworkPolicy {
  return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace: ns }, spec };
}

export type Matrix = Record<string, Record<string, boolean>>;

/** The reachability matrix as the compiled node models enforce it (egress at the source's node, ingress at the destination's). */
export function matrix(
  policies: NetworkPolicy[],
  port: number,
  protocol: Protocol = "TCP",
  family: 4 | 6 = 4,
  podList: Pod[] = pods(),
): Matrix {
  const models = new Map<string, CompiledModel>();
  for (const node of NODES) {
    const local: LocalPod[] = localPodsFromCluster(podList, node);
    models.set(node, compile({ namespaces: namespaces(), pods: podList, policies, node, local }));
  }
  const nodeOf = (key: string) =>
    podList.find((p) => `${p.metadata.namespace}/${p.metadata.name}` === key)!.spec.nodeName!;
  const out: Matrix = {};
  for (const from of ALL) {
    out[from] = {};
    for (const to of ALL) {
      if (from === to) {
        out[from][to] = true;
        continue;
      }
      const [fns, fp] = from.split("/");
      const [tns, tp] = to.split("/");
      const src = podAddr(fns, fp, family),
        dst = podAddr(tns, tp, family);
      const e = evaluate(models.get(nodeOf(from))!, "egress", from, { local: src, remote: dst, protocol, port });
      const i = evaluate(models.get(nodeOf(to))!, "ingress", to, { local: dst, remote: src, protocol, port });
      out[from][to] = e.allowed && i.allowed;
    }
  }
  return out;
}

/** A matrix from a predicate over (from, to) — for writing expectations by hand. */
export function expect(pred: (from: { ns: string; pod: string }, to: { ns: string; pod: string }) => boolean): Matrix {
  const out: Matrix = {};
  for (const from of ALL) {
    out[from] = {};
    for (const to of ALL) {
      const [fns, fp] = from.split("/");
      const [tns, tp] = to.split("/");
      out[from][to] = from === to || pred({ ns: fns, pod: fp }, { ns: tns, pod: tp });
    }
  }
  return out;
}

/** Readable diff of two matrices ("x/a -> y/b: expected true, got false"), empty when equal. */
export function diffMatrix(want: Matrix, got: Matrix): string[] {
  const d: string[] = [];
  for (const f of ALL)
    for (const t of ALL) if (want[f][t] !== got[f][t]) d.push(`${f} -> ${t}: expected ${want[f][t]}, got ${got[f][t]}`);
  return d;
}

// ---- a larger seeded synthetic cluster (for the incremental compile test) --------------------

/** Deterministic PRNG (mulberry32), so a failing sequence can be replayed from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SyntheticCluster {
  namespaces: Namespace[];
  pods: Pod[];
  policies: NetworkPolicy[];
  /** The node whose pods are local ("n0"). */
  node: string;
}

export const SYN_NAMESPACES = 12;
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

/** Random labels from a small vocabulary, so selectors match often. */
export function synLabels(r: () => number): Record<string, string> {
  const l: Record<string, string> = { app: pick(r, ["a0", "a1", "a2", "a3", "a4", "a5"]) };
  if (r() < 0.8) l.role = pick(r, ["r0", "r1", "r2", "r3"]);
  if (r() < 0.3) l.tier = pick(r, ["web", "db"]);
  return l;
}

/**
 * A pod with index i: in one of the listed namespaces (or, rarely, an unlisted one), dual-stack
 * or not, some host-network, finished or without an address yet; named ports http/dns.
 */
export function synPod(r: () => number, i: number, node: string): Pod {
  const ns = r() < 0.05 ? pick(r, ["u0", "u1"]) : `ns${Math.floor(r() * SYN_NAMESPACES)}`;
  const v4 = `10.250.${(i >> 8) & 255}.${i & 255}`;
  const v6 = `fd00:250::${i.toString(16)}`;
  const dual = r() < 0.4;
  const noIp = r() < 0.04;
  const ports = [];
  if (r() < 0.6) ports.push({ name: "http", containerPort: pick(r, [80, 8080]), protocol: "TCP" as const });
  if (r() < 0.3) ports.push({ name: "dns", containerPort: 53, protocol: "UDP" as const });
  if (r() < 0.1) ports.push({ name: "http", containerPort: 8443 });
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: `p${i}`, namespace: ns, labels: synLabels(r) },
    spec: { nodeName: node, hostNetwork: r() < 0.03 ? true : undefined, containers: [{ name: "c", ports }] },
    status: noIp
      ? { phase: "Pending" }
      : {
          phase: r() < 0.03 ? "Succeeded" : "Running",
          podIP: v4,
          podIPs: dual ? [{ ip: v4 }, { ip: v6 }] : [{ ip: v4 }],
        },
  } as Pod;
}

function synPolicy(r: () => number, i: number): NetworkPolicy {
  const ns = `ns${i % SYN_NAMESPACES}`;
  const podSel = (): LabelSelector =>
    pick<LabelSelector>(r, [
      { matchLabels: { app: synLabels(r).app } },
      { matchLabels: { role: pick(r, ["r0", "r1", "r2", "r3"]) } },
      {
        matchExpressions: [
          { key: "app", operator: "In" as const, values: [pick(r, ["a0", "a1", "a2"]), pick(r, ["a3", "a4", "a5"])] },
        ],
      },
      { matchExpressions: [{ key: "tier", operator: "NotIn" as const, values: ["db"] }] },
      { matchExpressions: [{ key: "role", operator: "Exists" as const }] },
      { matchExpressions: [{ key: "tier", operator: "DoesNotExist" as const }] },
      {},
    ]);
  const nsSel = (): LabelSelector =>
    pick<LabelSelector>(r, [
      {},
      { matchLabels: { team: pick(r, ["t0", "t1", "t2"]) } },
      { matchLabels: { "kubernetes.io/metadata.name": pick(r, ["u0", "ns1"]) } },
    ]);
  const peer = (): NetworkPolicyPeer =>
    pick<() => NetworkPolicyPeer>(r, [
      () => ({ podSelector: podSel() }),
      () => ({ namespaceSelector: nsSel() }),
      () => ({ namespaceSelector: nsSel(), podSelector: podSel() }),
      () => ({ ipBlock: { cidr: "10.96.0.0/12", except: ["10.96.1.0/24"] } }),
    ])();
  const ports = (): NetworkPolicyPort[] | undefined =>
    pick<NetworkPolicyPort[] | undefined>(r, [
      undefined,
      [{ protocol: "TCP" as const, port: "http" }],
      [
        { protocol: "UDP" as const, port: "dns" },
        { protocol: "TCP" as const, port: 443 },
      ],
      [{ protocol: "TCP" as const, port: 80, endPort: 90 }],
    ]);
  const types = pick<Array<"Ingress" | "Egress">>(r, [["Ingress"], ["Egress"], ["Ingress", "Egress"]]);
  // Policies select by app mostly (as real ones do), so local pods share isolation groups.
  const own = r() < 0.7 ? { matchLabels: { app: synLabels(r).app } } : podSel();
  const spec: NetworkPolicy["spec"] = { podSelector: own, policyTypes: [...types] };
  if (types.includes("Ingress"))
    spec.ingress =
      r() < 0.1 ? [] : [{ from: r() < 0.2 ? undefined : [peer(), ...(r() < 0.3 ? [peer()] : [])], ports: ports() }];
  if (types.includes("Egress"))
    spec.egress = r() < 0.1 ? [] : [{ to: r() < 0.2 ? undefined : [peer()], ports: ports() }];
  return policy(ns, `np${i}`, spec);
}

/** `pods` pods over `nodes` nodes (node "n0" is the local one) and `policies` policies. */
export function syntheticCluster(seed: number, pods: number, policies: number, nodes = 10): SyntheticCluster {
  const r = rng(seed);
  const namespaces: Namespace[] = Array.from({ length: SYN_NAMESPACES }, (_, i) => ({
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: `ns${i}`, labels: { team: `t${i % 3}` } },
  }));
  return {
    namespaces,
    pods: Array.from({ length: pods }, (_, i) => synPod(r, i, `n${Math.floor(r() * nodes)}`)),
    policies: Array.from({ length: policies }, (_, i) => synPolicy(r, i)),
    node: "n0",
  };
}
