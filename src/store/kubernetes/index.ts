// The Kubernetes cluster store: weft's state in a real kube-apiserver (layout.ts), reached with a
// kubeconfig or, in a pod, with its ServiceAccount token. src/lab/apiserver-process.ts starts one
// (over a real etcd) for tests and the lab.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { UnavailableError } from "../errors.js";
import { inClusterDir, KubeClient } from "./client.js";
import { KubernetesStore, type KubernetesStoreTuning } from "./store.js";

export { KubernetesStore, decodeNode, DEFAULT_POD_CIDR_WAIT_MS } from "./store.js";
export { KubeClient, KubeApiError, inClusterDir, SERVICEACCOUNT_DIR } from "./client.js";

export interface KubernetesStoreOptions extends KubernetesStoreTuning {
  /**
   * Path of a kubeconfig file (its current context is used). Absent: $KUBECONFIG, else in a pod the
   * ServiceAccount (inClusterDir()), else ~/.kube/config.
   */
  kubeconfig?: string;
  /** Per-request timeout. Default 10 s. */
  requestTimeoutMs?: number;
  /** The environment to read KUBECONFIG, KUBERNETES_SERVICE_HOST/PORT, WEFT_SERVICEACCOUNT_DIR from. */
  env?: NodeJS.ProcessEnv;
}

/** The client for options: a named kubeconfig, $KUBECONFIG, the pod's ServiceAccount, or ~/.kube/config. */
export function kubeClientFor(options: Omit<KubernetesStoreOptions, keyof KubernetesStoreTuning>): KubeClient {
  const env = options.env ?? process.env;
  const tuning = { requestTimeoutMs: options.requestTimeoutMs };
  const file = options.kubeconfig || env.KUBECONFIG;
  if (file) return KubeClient.fromFile(file, tuning);
  const dir = inClusterDir(env);
  if (dir) return KubeClient.inCluster(dir, env, tuning);
  const home = join(homedir(), ".kube", "config");
  if (!existsSync(home))
    throw new UnavailableError(
      `no Kubernetes credentials: give --kubeconfig (or $KUBECONFIG); in a pod, mount its ServiceAccount token (KUBERNETES_SERVICE_HOST/PORT and ${env.WEFT_SERVICEACCOUNT_DIR || "/var/run/secrets/kubernetes.io/serviceaccount"}/token)`,
    );
  return KubeClient.fromFile(home, tuning);
}

export function openKubernetesStore(options: KubernetesStoreOptions = {}): KubernetesStore {
  return new KubernetesStore(kubeClientFor(options), { podCIDRWaitMs: options.podCIDRWaitMs, log: options.log });
}
