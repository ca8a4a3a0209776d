// The upstream netpol e2e layout (test/e2e/network/netpol): namespaces x, y, z, each with pods
// a, b, c serving ports 80 and 81 over TCP and UDP (named serve-80-tcp, ...), spread over two
// nodes, dual-stack. Used by the policy unit and kernel tests.
import type { Namespace, NetworkPolicy, Pod } from "../k8s/types.js";
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
        status: { phase: "Running", podIP: podAddr(ns, p), podIPs: [{ ip: podAddr(ns, p) }, { ip: podAddr(ns, p, 6) }], hostIP: "192.168.0.1" },
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
export function matrix(policies: NetworkPolicy[], port: number, protocol: Protocol = "TCP", family: 4 | 6 = 4, podList: Pod[] = pods()): Matrix {
  const models = new Map<string, CompiledModel>();
  for (const node of NODES) {
    const local: LocalPod[] = localPodsFromCluster(podList, node);
    models.set(node, compile({ namespaces: namespaces(), pods: podList, policies, node, local }));
  }
  const nodeOf = (key: string) => podList.find((p) => `${p.metadata.namespace}/${p.metadata.name}` === key)!.spec.nodeName!;
  const out: Matrix = {};
  for (const from of ALL) {
    out[from] = {};
    for (const to of ALL) {
      if (from === to) { out[from][to] = true; continue; }
      const [fns, fp] = from.split("/");
      const [tns, tp] = to.split("/");
      const src = podAddr(fns, fp, family), dst = podAddr(tns, tp, family);
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
  for (const f of ALL) for (const t of ALL) if (want[f][t] !== got[f][t]) d.push(`${f} -> ${t}: expected ${want[f][t]}, got ${got[f][t]}`);
  return d;
}
