// The Kubernetes cluster store: weft's state in a real kube-apiserver (layout.ts), reached with a
// kubeconfig. src/lab/apiserver-process.ts starts one (over a real etcd) for tests and the lab.
import { KubeClient } from "./client.js";
import { KubernetesStore } from "./store.js";

export { KubernetesStore, decodeNode } from "./store.js";
export { KubeClient, KubeApiError } from "./client.js";

export interface KubernetesStoreOptions {
  /** Path of a kubeconfig file (its current context is used). */
  kubeconfig: string;
  /** Per-request timeout. Default 10 s. */
  requestTimeoutMs?: number;
}

export function openKubernetesStore(options: KubernetesStoreOptions): KubernetesStore {
  return new KubernetesStore(KubeClient.fromFile(options.kubeconfig, { requestTimeoutMs: options.requestTimeoutMs }));
}
