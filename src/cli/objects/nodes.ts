// The cluster's nodes as Kubernetes Node objects, made from the store's node leases: a live lease
// is a Ready node; a node whose lease expired but whose subnets are still reserved (the grace
// period) is NotReady, as Kubernetes shows a node whose kubelet stopped renewing.
import type { ClusterStore, NodeInfo, SubnetClaim } from "../../store/types.js";

export interface NodeObject {
  apiVersion: "v1";
  kind: "Node";
  metadata: {
    name: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  };
  spec: { podCIDR?: string; podCIDRs: string[] };
  status: {
    addresses: Array<{ type: "InternalIP" | "Hostname"; address: string }>;
    conditions: Array<{
      type: "Ready";
      status: "True" | "False";
      reason: string;
      message: string;
      lastTransitionTime?: string;
    }>;
  };
}

export const BACKEND_DATA_ANNOTATION = "weft.io/backend-data";
export const LEASE_TTL_ANNOTATION = "weft.io/lease-ttl-seconds";

/** A node with a live lease: Ready. */
export function liveNode(n: NodeInfo): NodeObject {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: n.name,
      resourceVersion: n.resourceVersion,
      creationTimestamp: n.registeredAt,
      labels: { "kubernetes.io/hostname": n.name },
      annotations: {
        [BACKEND_DATA_ANNOTATION]: JSON.stringify(n.backendData),
        [LEASE_TTL_ANNOTATION]: String(n.leaseTTLSeconds),
      },
    },
    spec: { ...(n.podCIDRs[0] ? { podCIDR: n.podCIDRs[0] } : {}), podCIDRs: n.podCIDRs },
    status: {
      addresses: [
        ...n.addresses.map((a) => ({ type: "InternalIP" as const, address: a })),
        { type: "Hostname" as const, address: n.name },
      ],
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "AgentLeaseLive",
          message: `the node's weft agent renews its lease (TTL ${n.leaseTTLSeconds}s)`,
          lastTransitionTime: n.registeredAt,
        },
      ],
    },
  };
}

const EXPIRED_CONDITION = {
  type: "Ready",
  status: "False",
  reason: "AgentLeaseExpired",
  message: "the node's weft agent stopped renewing its lease; its pod subnets stay reserved for the grace period",
} as const;

/** A node whose lease just ended (a watch's "removed"): NotReady, with what was last known of it. */
export function endedNode(n: NodeInfo): NodeObject {
  const o = liveNode(n);
  return { ...o, status: { ...o.status, conditions: [{ ...EXPIRED_CONDITION }] } };
}

function expiredNode(name: string, claims: SubnetClaim[], clusterCIDRs: readonly string[]): NodeObject {
  // Pod CIDRs in the order of the cluster CIDRs' families, as a live node lists them.
  const family = (c: string): number => (c.includes(":") ? 6 : 4);
  const order = clusterCIDRs.map(family);
  const podCIDRs = claims.map((c) => c.cidr).sort((a, b) => order.indexOf(family(a)) - order.indexOf(family(b)));
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name, labels: { "kubernetes.io/hostname": name }, annotations: {} },
    spec: { ...(podCIDRs[0] ? { podCIDR: podCIDRs[0] } : {}), podCIDRs },
    status: {
      addresses: [{ type: "Hostname", address: name }],
      conditions: [{ ...EXPIRED_CONDITION }],
    },
  };
}

/** All nodes, sorted by name: live ones (Ready=True) and expired ones still in their grace period (Ready=False). */
export async function listNodeObjects(store: ClusterStore): Promise<NodeObject[]> {
  const [live, claims, settings] = await Promise.all([
    store.listNodes(),
    store.listSubnetClaims(),
    store.getClusterSettings(),
  ]);
  const out = live.map(liveNode);
  const liveNames = new Set(live.map((n) => n.name));
  const dead = new Map<string, SubnetClaim[]>();
  for (const c of claims) if (!liveNames.has(c.node)) dead.set(c.node, [...(dead.get(c.node) ?? []), c]);
  for (const [name, cs] of dead) out.push(expiredNode(name, cs, settings?.clusterCIDRs ?? []));
  return out.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
}

export const nodeReady = (n: NodeObject): boolean =>
  n.status.conditions.some((c) => c.type === "Ready" && c.status === "True");
