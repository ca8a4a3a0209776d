// Where the lab kubelet gets its Pods and writes their bindings and status: the weft cluster store
// (its watch API) for an etcd lab, or a real kube-apiserver for a --store kubernetes lab.
import type { ClusterStore, StoredObject } from "../store/types.js";

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

export class StorePodSource implements PodSource {
  constructor(private readonly store: ClusterStore) {}

  get description(): string {
    return this.store.description;
  }

  watch(listener: (ev: PodEvent) => void): { ready: Promise<void>; close(): Promise<void> } {
    const h = this.store.objects.watch("Pod", (ev) => listener({ type: ev.type, pod: ev.object }), { replay: true });
    return { ready: h.ready, close: () => h.close() };
  }

  async bind(pod: PodObject, node: string): Promise<void> {
    const obj = pod as StoredObject;
    // Guarded by resourceVersion: if the user changed the Pod meanwhile, the newer event decides.
    await this.store.objects.apply({
      apiVersion: obj.apiVersion ?? "v1", kind: "Pod",
      metadata: { ...obj.metadata, resourceVersion: obj.metadata.resourceVersion },
      spec: { ...(obj.spec ?? {}), nodeName: node },
    });
  }

  async updateStatus(namespace: string, name: string, status: Record<string, unknown>): Promise<void> {
    await this.store.objects.updateStatus({ kind: "Pod", namespace, name }, status);
  }

  async confirmDeleted(): Promise<void> {
    // The weft store deletes at once; there is no graceful phase to end.
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
