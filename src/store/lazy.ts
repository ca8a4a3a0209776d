// A ClusterStore whose implementation module is loaded on first use. The etcd client (grpc) and
// the Kubernetes client are heavy (~20 and ~60 MB of an agent's memory); an agent or CLI that
// never talks to them should not pay for them, and openStore() stays synchronous.
import type { ClusterStore, ObjectStore, WatchHandle } from "./types.js";

function lazyWatch(load: () => Promise<WatchHandle>): WatchHandle {
  let closed = false;
  const inner = load();
  const ready = inner.then(async (h) => {
    if (closed) await h.close();
    else await h.ready;
  });
  // A failed load surfaces through `ready`; close() must not throw for it.
  ready.catch(() => undefined);
  return {
    ready,
    close: async () => {
      closed = true;
      const h = await inner.catch(() => undefined);
      await h?.close();
    },
  };
}

export function lazyStore(description: string, load: () => Promise<ClusterStore>): ClusterStore {
  let loaded: Promise<ClusterStore> | undefined;
  const store = () => (loaded ??= load());
  const objects: ObjectStore = {
    get: async (ref) => (await store()).objects.get(ref),
    list: async (kind, options) => (await store()).objects.list(kind, options),
    create: async (obj) => (await store()).objects.create(obj),
    apply: async (obj) => (await store()).objects.apply(obj),
    delete: async (ref, options) => (await store()).objects.delete(ref, options),
    updateStatus: async (ref, status, options) => (await store()).objects.updateStatus(ref, status, options),
    watch: (kind, listener, options) => lazyWatch(async () => (await store()).objects.watch(kind, listener, options)),
  };
  return {
    description,
    initCluster: async (input) => (await store()).initCluster(input),
    getClusterSettings: async () => (await store()).getClusterSettings(),
    setEncryption: async (input) => (await store()).setEncryption(input),
    registerNode: async (reg, options) => (await store()).registerNode(reg, options),
    getNode: async (name) => (await store()).getNode(name),
    listNodes: async () => (await store()).listNodes(),
    watchNodes: (listener, options) => lazyWatch(async () => (await store()).watchNodes(listener, options)),
    listSubnetClaims: async () => (await store()).listSubnetClaims(),
    removeNode: async (name) => (await store()).removeNode(name),
    objects,
    // Closing a store that was never used loads nothing.
    close: async () => {
      if (loaded) await (await loaded).close();
    },
  };
}
