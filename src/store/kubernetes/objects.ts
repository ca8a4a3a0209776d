// ObjectStore over the real Kubernetes API: Namespaces, Pods, NetworkPolicies (and a few other
// core kinds) are the apiserver's own resources; resourceVersion is the apiserver's, status goes to
// the status subresource, and watches are informers. Differences from the key-value stores, all
// of them Kubernetes' own rules: namespaced objects need their Namespace to exist; the apiserver
// defaults fields (pod spec, status.phase Pending, ...); most of a Pod's spec cannot change after
// creation; deleting a Pod bound to a node only marks it (its kubelet removes it).
import {
  ConflictError,
  InvalidError,
  NotFoundError,
  type ApplyAction,
  type ObjectInput,
  type ObjectRef,
  type ObjectStore,
  type StoredObject,
  type WatchHandle,
  type WatchListener,
  type WatchOptions,
} from "../types.js";
import { checkStringMap, dnsLabel, dnsSubdomain, stableStringify, staleConflict } from "../validate.js";
import { isApiError, type Json, type KubeClient } from "./client.js";
import { runInformer } from "./informer.js";

interface KindInfo {
  apiVersion: string;
  plural: string;
  namespaced: boolean;
  /** Has a status subresource. */
  status: boolean;
}

/** The kinds weft's model uses, with where the apiserver serves them. */
export const KINDS: Readonly<Record<string, KindInfo>> = {
  Namespace: { apiVersion: "v1", plural: "namespaces", namespaced: false, status: true },
  Pod: { apiVersion: "v1", plural: "pods", namespaced: true, status: true },
  NetworkPolicy: { apiVersion: "networking.k8s.io/v1", plural: "networkpolicies", namespaced: true, status: false },
  Service: { apiVersion: "v1", plural: "services", namespaced: true, status: true },
  ConfigMap: { apiVersion: "v1", plural: "configmaps", namespaced: true, status: false },
  Node: { apiVersion: "v1", plural: "nodes", namespaced: false, status: true },
  // weft's own kinds: CustomResourceDefinitions in deploy/weft.yaml.
  BGPConfiguration: { apiVersion: "weft.dev/v1", plural: "bgpconfigurations", namespaced: false, status: false },
  BGPPeer: { apiVersion: "weft.dev/v1", plural: "bgppeers", namespaced: false, status: false },
};

const NS_NAME_LABEL = "kubernetes.io/metadata.name";
const MAX_ATTEMPTS = 64;

interface Resolved {
  kind: string;
  info: KindInfo;
  name: string;
  namespace?: string;
  /** .../namespaces/NS/pods (the collection) */
  collection: string;
  /** the object's path */
  path: string;
  what: string;
}

function base(apiVersion: string): string {
  return apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
}

export function collectionPath(info: KindInfo, namespace?: string): string {
  return `${base(info.apiVersion)}${info.namespaced && namespace !== undefined ? `/namespaces/${namespace}` : ""}/${info.plural}`;
}

function kindInfo(kind: unknown): { kind: string; info: KindInfo } {
  if (typeof kind !== "string" || !/^[A-Z][A-Za-z0-9]{0,62}$/.test(kind)) {
    throw new InvalidError(
      `kind "${String(kind)}" is not valid: use the Kubernetes kind, e.g. Pod, Namespace, NetworkPolicy`,
    );
  }
  const info = KINDS[kind];
  if (!info)
    throw new InvalidError(
      `kind ${kind} is not supported by the kubernetes store: use one of ${Object.keys(KINDS).join(", ")}`,
    );
  return { kind, info };
}

function resolve(ref: ObjectRef): Resolved {
  const { kind, info } = kindInfo(ref.kind);
  const name = dnsSubdomain(`${kind} name`, ref.name);
  const plural = info.plural;
  if (!info.namespaced) {
    const collection = collectionPath(info);
    return { kind, info, name, collection, path: `${collection}/${name}`, what: `${plural} "${name}"` };
  }
  const namespace = dnsLabel("namespace", ref.namespace ?? "default");
  const collection = collectionPath(info, namespace);
  return {
    kind,
    info,
    name,
    namespace,
    collection,
    path: `${collection}/${name}`,
    what: `${plural} "${name}" in namespace "${namespace}"`,
  };
}

/** The apiserver's object in weft's shape: apiVersion/kind set (lists omit them), no managedFields. */
export function toStored(o: Json, kind: string): StoredObject {
  const info = KINDS[kind];
  const meta = { ...(o.metadata as Json) };
  delete meta.managedFields;
  // 1.21+ labels every Namespace with its name; weft's model relies on it, 1.20 lacks it.
  if (kind === "Namespace")
    meta.labels = { ...((meta.labels as Record<string, string>) ?? {}), [NS_NAME_LABEL]: String(meta.name) };
  return {
    ...o,
    apiVersion: info?.apiVersion ?? String(o.apiVersion),
    kind,
    metadata: meta,
  } as unknown as StoredObject;
}

/** 422 Invalid / 400 BadRequest become InvalidError with the apiserver's reasons. */
function rethrow(err: unknown, r: Resolved): never {
  if (isApiError(err, 422) || isApiError(err, 400)) {
    const causes = err.body.details?.causes
      ?.map((c) => `${c.field ? `${c.field}: ` : ""}${c.message ?? ""}`)
      .join("; ");
    throw new InvalidError(`${r.what} is not valid: ${causes || err.message}`);
  }
  if (isApiError(err, 404) && r.namespace !== undefined && err.body.details?.kind === "namespaces") {
    throw new NotFoundError(`namespace "${r.namespace}" not found: create the Namespace before ${r.what}`);
  }
  if (isApiError(err, 404)) throw new NotFoundError(`${r.what} not found`);
  if (isApiError(err, 409) && err.reason === "AlreadyExists")
    throw new ConflictError("AlreadyExists", `${r.what} already exists`);
  if (isApiError(err, 409))
    throw new ConflictError("ResourceVersion", `${r.what} has been modified: read it again and re-apply your change`);
  if (isApiError(err))
    throw new InvalidError(
      `${r.what}: the apiserver refused the request (${err.status} ${err.reason}: ${err.message})`,
    );
  throw err;
}

/**
 * The apiserver deletes a Pod in two writes even with no grace period (a pod on no node): it
 * stamps deletionTimestamp, then removes the object. That first write changes nothing else and the
 * removal follows in the same request, so watchers get only the removal (as from the other stores).
 * A Pod with a grace period (bound to a node) or an object with finalizers does get the update.
 */
function markedForRemovalNow(prev: Json, next: Json): boolean {
  const m = next.metadata as Json;
  if (
    !m.deletionTimestamp ||
    m.deletionGracePeriodSeconds !== 0 ||
    ((m.finalizers as unknown[] | undefined)?.length ?? 0) > 0
  )
    return false;
  if ((prev.metadata as Json).deletionTimestamp) return false;
  const strip = (o: Json): string => {
    const {
      resourceVersion: _rv,
      deletionTimestamp: _dt,
      deletionGracePeriodSeconds: _dg,
      managedFields: _mf,
      ...rest
    } = o.metadata as Json;
    return stableStringify({ ...o, metadata: rest });
  };
  return strip(prev) === strip(next);
}

export class KubeObjectStore implements ObjectStore {
  constructor(
    private readonly client: KubeClient,
    private readonly track: (w: WatchHandle) => WatchHandle,
  ) {}

  /** The body to send: the user's object minus server-owned fields, with the Namespace label. */
  private body(input: ObjectInput, r: Resolved): Json {
    if (typeof input.apiVersion !== "string" || input.apiVersion === "")
      throw new InvalidError(`${r.kind} "${r.name}": apiVersion is missing`);
    if (input.apiVersion !== r.info.apiVersion)
      throw new InvalidError(
        `${r.kind} "${r.name}": apiVersion ${input.apiVersion} is not served here: use ${r.info.apiVersion}`,
      );
    const {
      resourceVersion: _rv,
      uid: _uid,
      creationTimestamp: _ct,
      ...meta
    } = input.metadata as ObjectInput["metadata"] & { uid?: string; creationTimestamp?: string };
    checkStringMap(`${r.kind} "${r.name}" labels`, meta.labels);
    checkStringMap(`${r.kind} "${r.name}" annotations`, meta.annotations);
    const labels = r.kind === "Namespace" ? { ...(meta.labels ?? {}), [NS_NAME_LABEL]: r.name } : meta.labels;
    const metadata: Json = { ...meta, name: r.name, ...(labels ? { labels } : {}) };
    if (r.namespace !== undefined) metadata.namespace = r.namespace;
    else delete metadata.namespace;
    const { status: _status, ...rest } = input;
    return { ...rest, apiVersion: r.info.apiVersion, kind: r.kind, metadata };
  }

  async get(ref: ObjectRef): Promise<StoredObject> {
    const r = resolve(ref);
    try {
      return toStored(await this.client.request("GET", r.path), r.kind);
    } catch (err) {
      rethrow(err, r);
    }
  }

  async list(kind: string, options: { namespace?: string } = {}): Promise<StoredObject[]> {
    const { info } = kindInfo(kind);
    const ns =
      info.namespaced && options.namespace !== undefined ? dnsLabel("namespace", options.namespace) : undefined;
    const res = await this.client.request<{ items?: Json[] }>("GET", collectionPath(info, ns));
    const out = (res.items ?? []).map((o) => toStored(o, kind));
    const key = (o: StoredObject): string => `${o.metadata.namespace ?? ""}\u0000${o.metadata.name}`;
    return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  }

  async create(input: ObjectInput): Promise<StoredObject> {
    const r = resolve({ kind: input.kind, name: input.metadata?.name, namespace: input.metadata?.namespace });
    const body = this.body(input, r);
    try {
      return toStored(await this.client.request("POST", r.collection, { body }), r.kind);
    } catch (err) {
      rethrow(err, r);
    }
  }

  async apply(input: ObjectInput): Promise<{ object: StoredObject; action: ApplyAction }> {
    const r = resolve({ kind: input.kind, name: input.metadata?.name, namespace: input.metadata?.namespace });
    const body = this.body(input, r);
    const wantRv = input.metadata.resourceVersion;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let cur: StoredObject | undefined;
      try {
        cur = toStored(await this.client.request("GET", r.path), r.kind);
      } catch (err) {
        if (!isApiError(err, 404)) rethrow(err, r);
      }
      if (!cur) {
        if (wantRv !== undefined)
          throw new ConflictError(
            "ResourceVersion",
            `${r.what} was deleted since resourceVersion ${wantRv} was read: read it again`,
          );
        try {
          return {
            object: toStored(await this.client.request("POST", r.collection, { body }), r.kind),
            action: "created",
          };
        } catch (err) {
          if (isApiError(err, 409)) continue;
          rethrow(err, r);
        }
      }
      if (wantRv !== undefined && wantRv !== cur.metadata.resourceVersion) throw staleConflict(r.what, wantRv, cur);
      const next: Json = {
        ...body,
        metadata: { ...(body.metadata as Json), resourceVersion: cur.metadata.resourceVersion },
      };
      // Fields the apiserver or scheduler set and will not let change: kept unless the user sets them.
      const curSpec = (cur.spec ?? {}) as Json;
      const keep = r.kind === "Pod" ? ["nodeName"] : r.kind === "Service" ? ["clusterIP", "clusterIPs"] : [];
      for (const f of keep) {
        const spec = (next.spec ?? {}) as Json;
        if (curSpec[f] !== undefined && spec[f] === undefined) next.spec = { ...spec, [f]: curSpec[f] };
      }
      try {
        const out = toStored(await this.client.request("PUT", r.path, { body: next }), r.kind);
        // The apiserver writes nothing when the result equals what it stores: same resourceVersion.
        const action: ApplyAction =
          out.metadata.resourceVersion === cur.metadata.resourceVersion ? "unchanged" : "configured";
        return { object: action === "unchanged" ? cur : out, action };
      } catch (err) {
        if (isApiError(err, 409)) {
          if (wantRv !== undefined) throw staleConflict(r.what, wantRv);
          continue;
        }
        rethrow(err, r);
      }
    }
    throw new ConflictError("Contention", `${r.what} kept changing while being applied; retry`);
  }

  async delete(ref: ObjectRef, options: { resourceVersion?: string } = {}): Promise<StoredObject> {
    const r = resolve(ref);
    let cur: StoredObject;
    try {
      cur = toStored(await this.client.request("GET", r.path), r.kind);
    } catch (err) {
      rethrow(err, r);
    }
    if (options.resourceVersion !== undefined && options.resourceVersion !== cur.metadata.resourceVersion)
      throw staleConflict(r.what, options.resourceVersion, cur);
    // (A precondition makes the apiserver mark the object before removing it: only when asked for.)
    const preconditions =
      options.resourceVersion !== undefined ? { preconditions: { resourceVersion: options.resourceVersion } } : {};
    // A pod on no node goes at once anyway; saying so spares watchers a "marked for deletion" update.
    // A bound pod gets its grace period: its kubelet tears it down and finishes the deletion.
    const unbound = r.kind === "Pod" && !(cur.spec as { nodeName?: string } | undefined)?.nodeName;
    try {
      const res = await this.client.request("DELETE", r.path, {
        body: {
          apiVersion: "v1",
          kind: "DeleteOptions",
          ...preconditions,
          ...(unbound ? { gracePeriodSeconds: 0 } : {}),
        },
      });
      // Most kinds answer with the object (marked for deletion if it has finalizers or a grace period).
      return res.kind === r.kind ? toStored(res, r.kind) : cur;
    } catch (err) {
      if (isApiError(err, 409) && options.resourceVersion !== undefined)
        throw staleConflict(r.what, options.resourceVersion);
      if (isApiError(err, 409))
        throw new ConflictError("Contention", `${r.what} was replaced while being deleted: read it again`);
      rethrow(err, r);
    }
  }

  async updateStatus(
    ref: ObjectRef,
    status: Record<string, unknown>,
    options: { resourceVersion?: string } = {},
  ): Promise<StoredObject> {
    const r = resolve(ref);
    if (!r.info.status) throw new InvalidError(`${r.kind} has no status in Kubernetes: there is nothing to update`);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let cur: StoredObject;
      try {
        cur = toStored(await this.client.request("GET", r.path), r.kind);
      } catch (err) {
        rethrow(err, r);
      }
      if (options.resourceVersion !== undefined && options.resourceVersion !== cur.metadata.resourceVersion)
        throw staleConflict(r.what, options.resourceVersion, cur);
      const body = {
        ...cur,
        status,
        metadata: { ...cur.metadata, resourceVersion: options.resourceVersion ?? cur.metadata.resourceVersion },
      };
      try {
        return toStored(await this.client.request("PUT", `${r.path}/status`, { body }), r.kind);
      } catch (err) {
        if (isApiError(err, 409)) {
          if (options.resourceVersion !== undefined) throw staleConflict(r.what, options.resourceVersion);
          continue;
        }
        rethrow(err, r);
      }
    }
    throw new ConflictError("Contention", `${r.what} kept changing while its status was updated; retry`);
  }

  watch(
    kind: string,
    listener: WatchListener<StoredObject>,
    options: WatchOptions & { namespace?: string } = {},
  ): WatchHandle {
    const { info } = kindInfo(kind);
    const ns =
      info.namespaced && options.namespace !== undefined ? dnsLabel("namespace", options.namespace) : undefined;
    const replay = options.replay ?? true;
    let live = false;
    const deliver = (ev: Parameters<WatchListener<StoredObject>>[0]): void => listener(ev);
    const inf = runInformer(this.client, collectionPath(info, ns), {
      upsert: (o, prev) => {
        const obj = toStored(o, kind);
        if (prev && markedForRemovalNow(prev, o)) return;
        if (prev) deliver({ type: "updated", object: obj, previous: toStored(prev, kind) });
        else if (replay || live) deliver({ type: "added", object: obj });
      },
      remove: (o) => deliver({ type: "removed", object: toStored(o, kind) }),
    });
    const ready = inf.ready.then(() => {
      live = true;
    });
    return this.track({ ready, close: () => inf.close() });
  }
}
