// Where the lab kubelet gets its Pods and writes their bindings and status: the weft cluster store
// (its watch API, store.ts) for an etcd lab, or a real kube-apiserver (kube.ts) for a
// --store kubernetes lab. index.ts opens the one the lab's settings name.

/** The parts of a Pod the kubelet reads; both sources hand over Kubernetes-shaped objects. */
export interface PodObject {
  metadata: { name: string; namespace?: string; uid: string; resourceVersion?: string; deletionTimestamp?: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

export type PodEvent = { type: "added" | "updated" | "removed"; pod: PodObject };

export interface PodSource {
  readonly description: string;
  /** List + watch: every existing Pod arrives as "added" before `ready` resolves. */
  watch(listener: (ev: PodEvent) => void): { ready: Promise<void>; close(): Promise<void> };
  /** The scheduler's step: sets spec.nodeName. */
  bind(pod: PodObject, node: string): Promise<void>;
  updateStatus(namespace: string, name: string, status: Record<string, unknown>): Promise<void>;
  /** A kubelet's last word on a graceful deletion: the pod is gone from the node, remove it now. */
  confirmDeleted(pod: PodObject): Promise<void>;
  close(): Promise<void>;
}
