// Kubernetes-style objects (Pods, Namespaces, NetworkPolicies, ...) in a KvBackend: one key per
// object under PREFIX/objects/KIND/[NAMESPACE/]NAME, resourceVersion = the key's revision,
// compare-and-swap for every change.
import { randomUUID } from "node:crypto";
import type { KvBackend, KvEntry } from "./kv.js";
import { MAX_CAS_ATTEMPTS } from "./registration.js";
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
} from "./types.js";
import { checkStringMap, dnsLabel, dnsSubdomain, stableStringify, staleConflict } from "./validate.js";
import { watchPrefix } from "./kv-watch.js";

/** Kinds without a namespace (the rest are namespaced), as in Kubernetes. */
const CLUSTER_SCOPED = new Set([
  "Namespace",
  "Node",
  "PersistentVolume",
  "ClusterRole",
  "ClusterRoleBinding",
  "CustomResourceDefinition",
  "StorageClass",
  "PriorityClass",
  "BGPConfiguration",
  "BGPPeer",
]);

export const isClusterScoped = (kind: string): boolean => CLUSTER_SCOPED.has(kind);

function checkKind(kind: unknown): string {
  if (typeof kind !== "string" || !/^[A-Z][A-Za-z0-9]{0,62}$/.test(kind)) {
    throw new InvalidError(
      `kind "${String(kind)}" is not valid: use the Kubernetes kind, e.g. Pod, Namespace, NetworkPolicy`,
    );
  }
  return kind;
}

const plural = (kind: string): string => `${kind.toLowerCase()}s`;

/** What the object store needs of its cluster store: the backend, and watch bookkeeping for close(). */
export interface KvObjectHost {
  readonly kv: KvBackend;
  track(w: WatchHandle): WatchHandle;
}

export class KvObjectStore implements ObjectStore {
  constructor(
    private readonly store: KvObjectHost,
    private readonly prefix: string,
  ) {}

  private get kv(): KvBackend {
    return this.store.kv;
  }

  private resolve(ref: ObjectRef): { key: string; kind: string; name: string; namespace?: string; what: string } {
    const kind = checkKind(ref.kind);
    const name = dnsSubdomain(`${kind} name`, ref.name);
    if (isClusterScoped(kind))
      return { key: `${this.prefix}${kind}/${name}`, kind, name, what: `${plural(kind)} "${name}"` };
    const namespace = dnsLabel("namespace", ref.namespace ?? "default");
    return {
      key: `${this.prefix}${kind}/${namespace}/${name}`,
      kind,
      name,
      namespace,
      what: `${plural(kind)} "${name}" in namespace "${namespace}"`,
    };
  }

  private decode(e: KvEntry): StoredObject {
    const o = JSON.parse(e.value) as StoredObject;
    o.metadata.resourceVersion = String(e.modRevision);
    return o;
  }

  /** The object as stored: what the user gave, plus server fields, minus resourceVersion (it is the key's revision). */
  private build(
    input: ObjectInput,
    r: { kind: string; name: string; namespace?: string },
    base?: StoredObject,
  ): StoredObject {
    if (typeof input.apiVersion !== "string" || input.apiVersion === "")
      throw new InvalidError(`${r.kind} "${r.name}": apiVersion is missing`);
    const {
      resourceVersion: _rv,
      uid: _uid,
      creationTimestamp: _ct,
      ...meta
    } = input.metadata as ObjectInput["metadata"] & { uid?: string; creationTimestamp?: string };
    checkStringMap(`${r.kind} "${r.name}" labels`, meta.labels);
    checkStringMap(`${r.kind} "${r.name}" annotations`, meta.annotations);
    const labels =
      r.kind === "Namespace" ? { ...(meta.labels ?? {}), "kubernetes.io/metadata.name": r.name } : meta.labels;
    const metadata: StoredObject["metadata"] = {
      ...meta,
      name: r.name,
      ...(r.namespace !== undefined ? { namespace: r.namespace } : {}),
      ...(labels ? { labels } : {}),
      uid: base?.metadata.uid ?? randomUUID(),
      resourceVersion: "",
      creationTimestamp: base?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    };
    if (r.namespace === undefined) delete metadata.namespace;
    const out: StoredObject = { ...input, apiVersion: input.apiVersion, kind: r.kind, metadata };
    // status belongs to the status subresource: a replace keeps what is stored.
    if (base) {
      if (base.status !== undefined) out.status = base.status;
      else delete out.status;
    }
    return out;
  }

  private serialize(o: StoredObject): string {
    const { resourceVersion: _rv, ...metadata } = o.metadata;
    return JSON.stringify({ ...o, metadata });
  }

  async get(ref: ObjectRef): Promise<StoredObject> {
    const r = this.resolve(ref);
    const e = await this.kv.get(r.key);
    if (!e) throw new NotFoundError(`${r.what} not found`);
    return this.decode(e);
  }

  async list(kind: string, options: { namespace?: string } = {}): Promise<StoredObject[]> {
    checkKind(kind);
    const ns =
      !isClusterScoped(kind) && options.namespace !== undefined ? `${dnsLabel("namespace", options.namespace)}/` : "";
    const { entries } = await this.kv.list(`${this.prefix}${kind}/${ns}`);
    return entries.map((e) => this.decode(e));
  }

  async create(input: ObjectInput): Promise<StoredObject> {
    const r = this.resolve({ kind: input.kind, name: input.metadata?.name, namespace: input.metadata?.namespace });
    const obj = this.build(input, r);
    const res = await this.kv.txn(
      [{ key: r.key, modRevision: 0 }],
      [{ type: "put", key: r.key, value: this.serialize(obj) }],
    );
    if (!res.succeeded) throw new ConflictError("AlreadyExists", `${r.what} already exists`);
    obj.metadata.resourceVersion = String(res.revision);
    return obj;
  }

  async apply(input: ObjectInput): Promise<{ object: StoredObject; action: ApplyAction }> {
    const r = this.resolve({ kind: input.kind, name: input.metadata?.name, namespace: input.metadata?.namespace });
    const wantRv = input.metadata.resourceVersion;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const e = await this.kv.get(r.key);
      if (!e) {
        if (wantRv !== undefined)
          throw new ConflictError(
            "ResourceVersion",
            `${r.what} was deleted since resourceVersion ${wantRv} was read: read it again`,
          );
        const obj = this.build(input, r);
        const res = await this.kv.txn(
          [{ key: r.key, modRevision: 0 }],
          [{ type: "put", key: r.key, value: this.serialize(obj) }],
        );
        if (!res.succeeded) continue;
        obj.metadata.resourceVersion = String(res.revision);
        return { object: obj, action: "created" };
      }
      const cur = this.decode(e);
      if (wantRv !== undefined && wantRv !== cur.metadata.resourceVersion) throw staleConflict(r.what, wantRv, cur);
      const next = this.build(input, r, cur);
      const value = this.serialize(next);
      if (stableStringify(JSON.parse(value)) === stableStringify(JSON.parse(e.value)))
        return { object: cur, action: "unchanged" };
      const res = await this.kv.txn([{ key: r.key, modRevision: e.modRevision }], [{ type: "put", key: r.key, value }]);
      if (!res.succeeded) {
        if (wantRv !== undefined) throw staleConflict(r.what, wantRv);
        continue;
      }
      next.metadata.resourceVersion = String(res.revision);
      return { object: next, action: "configured" };
    }
    throw new ConflictError("Contention", `${r.what} kept changing while being applied; retry`);
  }

  async delete(ref: ObjectRef, options: { resourceVersion?: string } = {}): Promise<StoredObject> {
    const r = this.resolve(ref);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const e = await this.kv.get(r.key);
      if (!e) throw new NotFoundError(`${r.what} not found`);
      const cur = this.decode(e);
      if (options.resourceVersion !== undefined && options.resourceVersion !== cur.metadata.resourceVersion)
        throw staleConflict(r.what, options.resourceVersion, cur);
      const res = await this.kv.txn([{ key: r.key, modRevision: e.modRevision }], [{ type: "delete", key: r.key }]);
      if (res.succeeded) return cur;
    }
    throw new ConflictError("Contention", `${r.what} kept changing while being deleted; retry`);
  }

  async updateStatus(
    ref: ObjectRef,
    status: Record<string, unknown>,
    options: { resourceVersion?: string } = {},
  ): Promise<StoredObject> {
    const r = this.resolve(ref);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const e = await this.kv.get(r.key);
      if (!e) throw new NotFoundError(`${r.what} not found`);
      const cur = this.decode(e);
      if (options.resourceVersion !== undefined && options.resourceVersion !== cur.metadata.resourceVersion)
        throw staleConflict(r.what, options.resourceVersion, cur);
      const next: StoredObject = { ...cur, status };
      const res = await this.kv.txn(
        [{ key: r.key, modRevision: e.modRevision }],
        [{ type: "put", key: r.key, value: this.serialize(next) }],
      );
      if (res.succeeded) return { ...next, metadata: { ...next.metadata, resourceVersion: String(res.revision) } };
    }
    throw new ConflictError("Contention", `${r.what} kept changing while its status was updated; retry`);
  }

  watch(
    kind: string,
    listener: WatchListener<StoredObject>,
    options: WatchOptions & { namespace?: string } = {},
  ): WatchHandle {
    checkKind(kind);
    const ns =
      !isClusterScoped(kind) && options.namespace !== undefined ? `${dnsLabel("namespace", options.namespace)}/` : "";
    return this.store.track(
      watchPrefix(this.kv, `${this.prefix}${kind}/${ns}`, (e) => this.decode(e), listener, options.replay ?? true),
    );
  }
}
