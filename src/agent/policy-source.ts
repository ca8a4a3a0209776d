// Where the agent's NetworkPolicies, Pods and Namespaces come from. On a Kubernetes cluster they
// live in the API server, whatever store keeps weft's own leases: an agent on `--store etcd` that
// read them from etcd would enforce nothing that kubectl applied (fail open). So "auto" takes the
// Kubernetes API whenever one is configured, and the store's own objects only without one (the lab
// over etcd, objects applied with `weft apply`).
import { existsSync } from "node:fs";
import { defaultKubeconfig, type StoreConfig } from "../store/index.js";

export const POLICY_SOURCES = ["auto", "store", "kubernetes"] as const;
export type PolicySource = (typeof POLICY_SOURCES)[number];

export function isPolicySource(v: string): v is PolicySource {
  return (POLICY_SOURCES as readonly string[]).includes(v);
}

/** Where a pod's ServiceAccount token is mounted (in-cluster credentials). */
export const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/** A configured Kubernetes API: a kubeconfig, or (kubeconfig absent) the pod's in-cluster credentials. */
export interface KubeApi {
  kubeconfig?: string;
  /** How it was found, for the log: "--kubeconfig", "$KUBECONFIG", "in-cluster ServiceAccount". */
  how: string;
}

/** The Kubernetes API this process is configured for, or null: --kubeconfig, $KUBECONFIG, then in-cluster. */
export function findKubeApi(
  kubeconfig: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  exists: (path: string) => boolean = existsSync,
): KubeApi | null {
  if (kubeconfig) return { kubeconfig, how: "--kubeconfig" };
  if (env.KUBECONFIG) return { kubeconfig: env.KUBECONFIG, how: "$KUBECONFIG" };
  if (env.KUBERNETES_SERVICE_HOST && exists(SERVICE_ACCOUNT_TOKEN)) return { how: "in-cluster ServiceAccount" };
  return null;
}

/**
 * A Kubernetes store's configuration; without a kubeconfig the store takes $KUBECONFIG, else the
 * pod's ServiceAccount, else ~/.kube/config itself.
 */
export function kubeStoreConfig(
  kubeconfig: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  exists: (path: string) => boolean = existsSync,
  requestTimeoutMs = 3000,
): StoreConfig {
  // Only in a pod is the kubeconfig left out (the store then takes the ServiceAccount); elsewhere
  // it is named here, as kubectl would find it.
  const inPod = !kubeconfig && !env.KUBECONFIG && findKubeApi(undefined, env, exists) !== null;
  const file = kubeconfig ?? (inPod ? undefined : defaultKubeconfig(env));
  return { kind: "kubernetes", requestTimeoutMs, ...(file ? { kubeconfig: file } : {}) } as StoreConfig;
}

export class PolicySourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PolicySourceError";
  }
}

/**
 * The policy objects' store beside `storeKind` (undefined = the store's own objects) and why.
 * PolicySourceError when "kubernetes" is asked for and no API is configured.
 */
export function resolvePolicySource(
  storeKind: StoreConfig["kind"],
  source: PolicySource,
  api: KubeApi | null,
  env: NodeJS.ProcessEnv = process.env,
  exists: (path: string) => boolean = existsSync,
): { policyStore?: StoreConfig; reason: string } {
  if (storeKind === "kubernetes")
    return { reason: "--store kubernetes: policies, pods and namespaces are the API server's" };
  if (source === "store")
    return {
      reason: api
        ? `--policy-source store: the ${storeKind} store's objects, although a Kubernetes API is configured (${api.how}): policies applied with kubectl are NOT enforced`
        : `--policy-source store: the ${storeKind} store's objects`,
    };
  if (source === "kubernetes") {
    if (!api)
      throw new PolicySourceError(
        "--policy-source kubernetes needs a Kubernetes API: pass --kubeconfig FILE, set $KUBECONFIG, or run in a pod with a ServiceAccount",
      );
    return {
      policyStore: kubeStoreConfig(api.kubeconfig, env, exists),
      reason: `--policy-source kubernetes (${api.how})`,
    };
  }
  if (storeKind === "etcd" && api)
    return {
      policyStore: kubeStoreConfig(api.kubeconfig, env, exists),
      reason: `a Kubernetes API is configured (${api.how}): policies come from it, leases stay in etcd`,
    };
  return {
    reason:
      storeKind === "etcd"
        ? "no Kubernetes API configured (--kubeconfig, $KUBECONFIG, in-cluster): the etcd store's objects (weft apply)"
        : "single host: the local store's objects (weft apply)",
  };
}
