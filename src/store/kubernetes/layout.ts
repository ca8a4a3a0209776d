// Where weft keeps its state in the Kubernetes API (like flannel's kube subnet manager, plus leases):
//
//   ConfigMap kube-system/weft-config            data["settings.json"]: ClusterSettings (written by
//                                                `weft cluster init` or by hand in deploy/weft.yaml)
//   Node <name>                                  weft only patches what it owns: label weft.dev/node=true,
//                                                annotations weft.dev/backend-data (JSON),
//                                                weft.dev/underlay-addresses (comma list),
//                                                weft.dev/pod-cidrs (the subnets weft uses),
//                                                weft.dev/registered-at, weft.dev/lease-ttl-seconds, and the
//                                                NetworkUnavailable condition (status). It creates the Node
//                                                (annotation weft.dev/node-created) only when none exists,
//                                                and never deletes or re-creates one.
//   Lease kube-system/weft-node-<name>           the node's liveness (weft's own: kube-node-lease/<name> is
//                                                the kubelet's); label weft.dev/node-lease, annotation
//                                                weft.dev/node = node name; renewTime + leaseDurationSeconds
//   Lease kube-system/weft-subnet-<cidr>         podCIDRSource "weft" only: one per claimed pod subnet (label
//                                                weft.dev/subnet-claim, annotation weft.dev/cidr);
//                                                holderIdentity = node, leaseDurationSeconds = TTL + grace
// A subnet is taken iff its claim Lease exists and has not expired. Claims are made by create
// (the name is derived from the CIDR, so the apiserver refuses a second one) or, for an expired
// claim, by an update that carries the resourceVersion that was read: two nodes never hold one.
import { createHash } from "node:crypto";
import { parseCidr } from "../validate.js";
import type { Json } from "./client.js";

export const SETTINGS_NAMESPACE = "kube-system";
export const SETTINGS_NAME = "weft-config";
export const SETTINGS_KEY = "settings.json";

export const NODE_LABEL = "weft.dev/node";
export const A_BACKEND = "weft.dev/backend-data";
export const A_ADDRESSES = "weft.dev/underlay-addresses";
export const A_REGISTERED = "weft.dev/registered-at";
export const A_TTL = "weft.dev/lease-ttl-seconds";
/** The pod subnets weft uses on this node (what it claimed, or spec.podCIDRs with source "node"). */
export const A_POD_CIDRS = "weft.dev/pod-cidrs";
/** weft created this Node (no kubelet had): weft may then keep its status.addresses current. */
export const A_CREATED = "weft.dev/node-created";
/** Every annotation weft writes on a Node (removeNode takes them off again, except A_POD_CIDRS/A_CREATED). */
export const NODE_ANNOTATIONS = [A_BACKEND, A_ADDRESSES, A_REGISTERED, A_TTL] as const;

/** The condition weft sets False once the node's subnets are registered (as flannel and Calico do). */
export const NETWORK_CONDITION = "NetworkUnavailable";
export const NETWORK_UP_REASON = "WeftIsUp";

export const NODE_LEASE_NAMESPACE = "kube-system";
export const NODE_LEASE_LABEL = "weft.dev/node-lease";
/** On a node Lease: the node's name (the Lease's name is hashed for long node names). */
export const A_NODE = "weft.dev/node";
export const CLAIM_NAMESPACE = "kube-system";
export const CLAIM_LABEL = "weft.dev/subnet-claim";
export const A_CIDR = "weft.dev/cidr";
export const A_CLAIMED_AT = "weft.dev/claimed-at";

export const CORE = "/api/v1";
export const COORD = "/apis/coordination.k8s.io/v1";

export const nodePath = (name?: string): string => `${CORE}/nodes${name ? `/${name}` : ""}`;
/** weft's liveness Lease of a node: weft-node-<name>, or weft-node-<sha256 prefix> when that is too long. */
export function nodeLeaseName(node: string): string {
  const plain = `weft-node-${node}`;
  if (plain.length <= 253) return plain;
  return `weft-node-${createHash("sha256").update(node).digest("hex").slice(0, 40)}`;
}
/** The Lease path of a node (by node name), or the collection. */
export const nodeLeasePath = (node?: string): string =>
  `${COORD}/namespaces/${NODE_LEASE_NAMESPACE}/leases${node ? `/${nodeLeaseName(node)}` : ""}`;
/** The node a liveness Lease belongs to. */
export const leaseNode = (lease: Json): string | undefined =>
  metaOf(lease).annotations?.[A_NODE] ?? (lease.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
export const claimPath = (name?: string): string =>
  `${COORD}/namespaces/${CLAIM_NAMESPACE}/leases${name ? `/${name}` : ""}`;
export const settingsPath = (name?: string): string =>
  `${CORE}/namespaces/${SETTINGS_NAMESPACE}/configmaps${name ? `/${name}` : ""}`;

/** A DNS-1123 name per subnet: weft-subnet-10-244-3-0-24, weft-subnet-v6-<32 hex digits>-64. */
export function claimName(cidr: string): string {
  const c = parseCidr(cidr);
  if (c.family === 4) {
    const v = c.base;
    const octets = [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n));
    return `weft-subnet-${octets.join("-")}-${c.prefix}`;
  }
  return `weft-subnet-v6-${c.base.toString(16).padStart(32, "0")}-${c.prefix}`;
}

/** When a Lease runs out (ms since the epoch); 0 if it has no renewTime. */
export function leaseExpiry(lease: Json): number {
  const spec = (lease.spec ?? {}) as { renewTime?: string; leaseDurationSeconds?: number };
  const t = spec.renewTime ? Date.parse(spec.renewTime) : NaN;
  if (Number.isNaN(t)) return 0;
  return t + (spec.leaseDurationSeconds ?? 0) * 1000;
}

export const metaOf = (
  o: Json,
): {
  name: string;
  resourceVersion: string;
  uid: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
} => o.metadata as { name: string; resourceVersion: string; uid: string };
