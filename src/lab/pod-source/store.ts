// The lab kubelet's Pod source on the weft cluster store (an etcd lab): its object watch API.
import type { ClusterStore, StoredObject } from "../../store/types.js";
import type { PodEvent, PodObject, PodSource } from "./types.js";

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
      apiVersion: obj.apiVersion ?? "v1",
      kind: "Pod",
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
