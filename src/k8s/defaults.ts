// Defaulting as the apiserver does it, so every consumer sees the same effective objects.
import type { Namespace, NetworkPolicy, NetworkPolicyPort, PolicyType, Protocol } from "./types.js";

/** The namespace label Kubernetes (1.21+) sets on every namespace. */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

/** policyTypes as the apiserver defaults them: Ingress always, Egress when egress rules exist. */
export function effectivePolicyTypes(np: NetworkPolicy): PolicyType[] {
  const given = np.spec.policyTypes;
  if (given && given.length > 0) return given.filter((t): t is PolicyType => t === "Ingress" || t === "Egress");
  return np.spec.egress && np.spec.egress.length > 0 ? ["Ingress", "Egress"] : ["Ingress"];
}

export function portProtocol(p: NetworkPolicyPort): Protocol {
  return (p.protocol ?? "TCP") as Protocol;
}

/** A NetworkPolicy with policyTypes and port protocols filled in. */
export function defaultNetworkPolicy(np: NetworkPolicy): NetworkPolicy {
  const ports = (ps: NetworkPolicyPort[] | undefined) => ps?.map((p) => ({ ...p, protocol: portProtocol(p) }));
  return {
    ...np,
    spec: {
      ...np.spec,
      policyTypes: effectivePolicyTypes(np),
      ingress: np.spec.ingress?.map((r) => ({ ...r, ports: ports(r.ports) })),
      egress: np.spec.egress?.map((r) => ({ ...r, ports: ports(r.ports) })),
    },
  };
}

/** Namespace labels including the automatic kubernetes.io/metadata.name. */
export function namespaceLabels(ns: Namespace): Record<string, string> {
  return { ...(ns.metadata.labels ?? {}), [NAMESPACE_NAME_LABEL]: ns.metadata.name };
}
