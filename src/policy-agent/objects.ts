// The controller's view of the cluster objects policy depends on: Namespaces, Pods and
// NetworkPolicies, kept current by store watches (list + watch) and, for a pod being added on
// this node, by a direct read (so a CNI ADD never races the watch).
import type { Logger } from "pino";
import {
  dns1123Label,
  validateNamespace,
  validateNetworkPolicy,
  validatePod,
  formatErrors,
  type Namespace,
  type NetworkPolicy,
  type Pod,
  type Validated,
} from "../k8s/index.js";
import { NotFoundError } from "../store/errors.js";
import type { ObjectStore, StoredObject, WatchEvent, WatchHandle } from "../store/types.js";

export const POLICY_KINDS = ["Namespace", "Pod", "NetworkPolicy"] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

export interface ObjectSnapshot {
  namespaces: Namespace[];
  pods: Pod[];
  policies: NetworkPolicy[];
}

interface Entry<T> {
  rv: string;
  value: T;
}

const validators: { [K in PolicyKind]: (o: unknown) => Validated<unknown> } = {
  Namespace: validateNamespace,
  Pod: validatePod,
  NetworkPolicy: validateNetworkPolicy,
};

const keyOf = (o: StoredObject): string =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

/** true when resourceVersion `a` is older than `b` (only comparable when both are numbers). */
function older(a: string, b: string): boolean {
  return /^\d+$/.test(a) && /^\d+$/.test(b) && BigInt(a) < BigInt(b);
}

export class ObjectCache {
  private readonly maps: { [K in PolicyKind]: Map<string, Entry<unknown>> } = {
    Namespace: new Map(),
    Pod: new Map(),
    NetworkPolicy: new Map(),
  };
  private watches: WatchHandle[] = [];

  constructor(
    private readonly store: ObjectStore,
    /**
     * Called after every change that affects the snapshot (from the watches and from
     * refreshForPod), with the object as stored or as removed.
     */
    private readonly onChange: (kind: PolicyKind, object: StoredObject) => void,
    private readonly log?: Logger,
  ) {}

  /** Opens the watches; resolves once every kind is listed (the snapshot is complete). */
  async start(): Promise<void> {
    for (const kind of POLICY_KINDS) {
      this.watches.push(this.store.watch(kind, (ev) => this.onEvent(kind, ev), { replay: true }));
    }
    await Promise.all(this.watches.map((w) => w.ready));
  }

  async stop(): Promise<void> {
    const ws = this.watches;
    this.watches = [];
    await Promise.allSettled(ws.map((w) => w.close()));
  }

  snapshot(): ObjectSnapshot {
    const vals = <T>(k: PolicyKind) => [...this.maps[k].values()].map((e) => e.value as T);
    return {
      namespaces: vals<Namespace>("Namespace"),
      pods: vals<Pod>("Pod"),
      policies: vals<NetworkPolicy>("NetworkPolicy"),
    };
  }

  /** The pod's labels ({} when its object is unknown), and its namespace's policies. */
  podView(namespace: string, name: string): { labels: Record<string, string>; policies: NetworkPolicy[] } {
    const pod = this.maps.Pod.get(`${namespace}/${name}`)?.value as Pod | undefined;
    const policies: NetworkPolicy[] = [];
    for (const e of this.maps.NetworkPolicy.values()) {
      const np = e.value as NetworkPolicy;
      if ((np.metadata.namespace ?? "default") === namespace) policies.push(np);
    }
    return { labels: pod?.metadata.labels ?? {}, policies };
  }

  /** The pod object, if known. */
  pod(namespace: string, name: string): Pod | undefined {
    return this.maps.Pod.get(`${namespace}/${name}`)?.value as Pod | undefined;
  }

  /**
   * Reads the pod and its namespace's policies straight from the store and merges what is newer
   * than the watch has delivered. Returns true when that changed the snapshot.
   */
  async refreshForPod(namespace: string, name: string): Promise<boolean> {
    // A namespace Kubernetes cannot have (e.g. "_cni" for containers without K8S_POD_* args)
    // holds no Pod object and no policy: nothing to read, and the view is already complete.
    if (dns1123Label(namespace).length > 0) return false;
    let changed = false;
    try {
      const pod = await this.store.get({ kind: "Pod", namespace, name });
      changed = this.merge("Pod", pod) || changed;
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    for (const np of await this.store.list("NetworkPolicy", { namespace }))
      changed = this.merge("NetworkPolicy", np) || changed;
    return changed;
  }

  private onEvent(kind: PolicyKind, ev: WatchEvent<StoredObject>): void {
    if (ev.type === "removed") {
      if (this.maps[kind].delete(keyOf(ev.object))) this.onChange(kind, ev.object);
    } else this.merge(kind, ev.object);
  }

  /** Stores the object unless an equal or newer version is already there (and reports the change). */
  private merge(kind: PolicyKind, obj: StoredObject): boolean {
    const key = keyOf(obj);
    const rv = obj.metadata.resourceVersion;
    const cur = this.maps[kind].get(key);
    if (cur && (cur.rv === rv || older(rv, cur.rv))) return false;
    const v = validators[kind](obj);
    if (!v.ok) {
      // An object the compiler cannot read is left out; the store validates on write, so this is
      // an object written around weft's own validation.
      this.log?.warn({ kind, object: key, errors: formatErrors(v.errors) }, "ignoring an invalid object");
      const removed = this.maps[kind].delete(key);
      if (removed) this.onChange(kind, obj);
      return removed;
    }
    this.maps[kind].set(key, { rv, value: v.value });
    this.onChange(kind, obj);
    return true;
  }
}
