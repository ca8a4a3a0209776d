// The object kinds weft's kubectl-style commands know, and how a user may name them on the command
// line (singular, plural, short name, with or without the API group; case-insensitive, as kubectl).
import { UserError } from "../errors.js";

export type KindName = "Namespace" | "Pod" | "NetworkPolicy" | "Node" | "BGPConfiguration" | "BGPPeer";

export interface KindInfo {
  kind: KindName;
  apiVersion: string;
  /** API group ("" = core), for kubectl-style output: networkpolicy.networking.k8s.io/p. */
  group: string;
  singular: string;
  plural: string;
  short: string;
  namespaced: boolean;
  /** Nodes come from the agents' leases: read-only (delete = administrative removal). */
  readOnly: boolean;
}

export const KINDS: readonly KindInfo[] = [
  {
    kind: "Namespace",
    apiVersion: "v1",
    group: "",
    singular: "namespace",
    plural: "namespaces",
    short: "ns",
    namespaced: false,
    readOnly: false,
  },
  {
    kind: "Pod",
    apiVersion: "v1",
    group: "",
    singular: "pod",
    plural: "pods",
    short: "po",
    namespaced: true,
    readOnly: false,
  },
  {
    kind: "NetworkPolicy",
    apiVersion: "networking.k8s.io/v1",
    group: "networking.k8s.io",
    singular: "networkpolicy",
    plural: "networkpolicies",
    short: "netpol",
    namespaced: true,
    readOnly: false,
  },
  {
    kind: "Node",
    apiVersion: "v1",
    group: "",
    singular: "node",
    plural: "nodes",
    short: "no",
    namespaced: false,
    readOnly: true,
  },
  // weft's BGP objects (src/store/bgp-objects.ts; CRDs in the Kubernetes store).
  {
    kind: "BGPConfiguration",
    apiVersion: "weft.dev/v1",
    group: "weft.dev",
    singular: "bgpconfiguration",
    plural: "bgpconfigurations",
    short: "bgpconfig",
    namespaced: false,
    readOnly: false,
  },
  {
    kind: "BGPPeer",
    apiVersion: "weft.dev/v1",
    group: "weft.dev",
    singular: "bgppeer",
    plural: "bgppeers",
    short: "bgppeer",
    namespaced: false,
    readOnly: false,
  },
];

const KNOWN = KINDS.map((k) => `${k.plural} (${k.short})`).join(", ");

/** The kind a command-line word names; UserError for anything else. */
export function resolveKind(word: string): KindInfo {
  const w = word.toLowerCase();
  for (const k of KINDS) {
    const names = [k.singular, k.plural, k.short];
    if (names.includes(w)) return k;
    if (k.group && names.some((n) => w === `${n}.${k.group}`)) return k;
  }
  throw new UserError(`unknown resource type "${word}": use one of ${KNOWN}`);
}

/** The kind of a manifest's `kind` field (exact, as the API server matches it). */
export function kindOfManifest(kind: string): KindInfo | undefined {
  return KINDS.find((k) => k.kind === kind);
}

/** "pod", "networkpolicy.networking.k8s.io": kubectl's prefix in `pod/a created`. */
export const resourceName = (k: KindInfo): string => (k.group ? `${k.singular}.${k.group}` : k.singular);
/** "pods", "networkpolicies.networking.k8s.io": kubectl's name in `pods "a" not found`. */
export const resourcePlural = (k: KindInfo): string => (k.group ? `${k.plural}.${k.group}` : k.plural);

export const SUPPORTED_MANIFEST_KINDS = "Namespace, Pod, NetworkPolicy, BGPConfiguration, BGPPeer";
