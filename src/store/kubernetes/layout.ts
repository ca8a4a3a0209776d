// Where weft keeps its state in the Kubernetes API (like flannel's kube subnet manager, plus leases):
//
//   ConfigMap kube-system/weft-config            data["settings.json"]: ClusterSettings, created once
//   Node <name>                                  label weft.dev/node=true; spec.podCIDR(s) = the
//                                                node's pod subnets; annotations weft.dev/backend-data
//                                                (JSON), weft.dev/underlay-addresses (comma list),
//                                                weft.dev/registered-at, weft.dev/lease-ttl-seconds;
//                                                status.addresses InternalIP = underlay addresses
//   Lease kube-node-lease/<name>                 the node's liveness: renewTime + leaseDurationSeconds
//   Lease kube-system/weft-subnet-<cidr>         one per claimed pod subnet (label weft.dev/subnet-claim,
//                                                annotation weft.dev/cidr); holderIdentity = node,
//                                                leaseDurationSeconds = node TTL + grace period
// A subnet is taken iff its claim Lease exists and has not expired. Claims are made by create
// (the name is derived from the CIDR, so the apiserver refuses a second one) or, for an expired
// claim, by an update that carries the resourceVersion that was read: two nodes never hold one.
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

export const NODE_LEASE_NAMESPACE = "kube-node-lease";
export const CLAIM_NAMESPACE = "kube-system";
export const CLAIM_LABEL = "weft.dev/subnet-claim";
export const A_CIDR = "weft.dev/cidr";
export const A_CLAIMED_AT = "weft.dev/claimed-at";

export const CORE = "/api/v1";
export const COORD = "/apis/coordination.k8s.io/v1";

export const nodePath = (name?: string): string => `${CORE}/nodes${name ? `/${name}` : ""}`;
export const nodeLeasePath = (name?: string): string =>
  `${COORD}/namespaces/${NODE_LEASE_NAMESPACE}/leases${name ? `/${name}` : ""}`;
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
