// `weft apply`: every object is validated (and every precondition checked) before the first write;
// then Namespaces are written first, then the rest in file order, each reported like kubectl.
import { NAMESPACE_NAME_LABEL } from "../../k8s/index.js";
import { ConflictError, isStoreError, type ApplyAction, type ClusterStore, type ObjectInput, type StoredObject } from "../../store/types.js";
import { UserError } from "../errors.js";
import { resourceName } from "./kinds.js";
import type { Prepared } from "./prepare.js";

export const DEFAULT_NAMESPACE = "default";

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v ?? {}));

/** The first field path where a and b differ, or undefined when they are equal. */
export function firstDifference(a: unknown, b: unknown, path: string): string | undefined {
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return path;
    for (let i = 0; i < a.length; i++) {
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (isMap(a) && isMap(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const d = firstDifference(a[k], b[k], `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  return a === b ? undefined : path;
}

function withoutImages(spec: unknown): unknown {
  const s = plain(spec) as Record<string, unknown>;
  for (const c of Array.isArray(s.containers) ? s.containers : []) if (isMap(c)) delete c.image;
  return s;
}

/**
 * The spec to write when a Pod is applied over a stored one, or the field that may not change.
 * As in Kubernetes, only container images may change in place; spec.nodeName, set by the
 * scheduler, is kept when the manifest leaves it out.
 */
export function podSpecUpdate(stored: StoredObject, wanted: Record<string, unknown>): { spec: Record<string, unknown> } | { forbidden: string } {
  const spec = plain(wanted) as Record<string, unknown>;
  const cur = plain(stored.spec) as Record<string, unknown>;
  if (spec.nodeName === undefined && cur.nodeName !== undefined) spec.nodeName = cur.nodeName;
  const diff = firstDifference(withoutImages(spec), withoutImages(cur), "spec");
  return diff ? { forbidden: diff } : { spec };
}

function podForbidden(p: Prepared, field: string): UserError {
  return new UserError(
    `${p.where}: Pod "${p.name}" is invalid: spec: Forbidden: pod updates may not change fields other than metadata.labels, metadata.annotations and spec.containers[*].image (${field} differs): delete the pod and apply it again`,
    1,
  );
}

async function getOrUndefined(store: ClusterStore, kind: string, name: string, namespace?: string): Promise<StoredObject | undefined> {
  try {
    return await store.objects.get({ kind, name, ...(namespace ? { namespace } : {}) });
  } catch (e) {
    if (isStoreError(e, "NotFound")) return undefined;
    throw e;
  }
}

/** Creates the "default" namespace if it is missing: in Kubernetes it always exists. */
export async function ensureDefaultNamespace(store: ClusterStore): Promise<void> {
  if (await getOrUndefined(store, "Namespace", DEFAULT_NAMESPACE)) return;
  try {
    await store.objects.create({
      apiVersion: "v1", kind: "Namespace",
      metadata: { name: DEFAULT_NAMESPACE, labels: { [NAMESPACE_NAME_LABEL]: DEFAULT_NAMESPACE } },
      status: { phase: "Active" },
    });
  } catch (e) {
    if (!(e instanceof ConflictError && e.reason === "AlreadyExists")) throw e;
  }
}

/** Checks what can be checked without writing: namespaces exist (or come with the input), Pod specs unchanged. */
async function precheck(store: ClusterStore, objs: readonly Prepared[]): Promise<void> {
  const incoming = new Set(objs.filter((p) => p.info.kind === "Namespace").map((p) => p.name));
  const known = new Map<string, boolean>();
  for (const p of objs) {
    if (!p.namespace || p.namespace === DEFAULT_NAMESPACE || incoming.has(p.namespace)) continue;
    if (!known.has(p.namespace)) known.set(p.namespace, (await getOrUndefined(store, "Namespace", p.namespace)) !== undefined);
    if (!known.get(p.namespace)) throw new UserError(`${p.where}: namespaces "${p.namespace}" not found: create the Namespace first (or apply it in the same input)`, 1);
  }
  for (const p of objs) {
    if (p.info.kind !== "Pod") continue;
    const cur = await getOrUndefined(store, "Pod", p.name, p.namespace);
    if (!cur) continue;
    const u = podSpecUpdate(cur, p.input.spec ?? {});
    if ("forbidden" in u) throw podForbidden(p, u.forbidden);
  }
}

async function applyPod(store: ClusterStore, p: Prepared): Promise<ApplyAction> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await getOrUndefined(store, "Pod", p.name, p.namespace);
    if (!cur) {
      try {
        await store.objects.create(p.input);
        return "created";
      } catch (e) {
        if (e instanceof ConflictError && e.reason === "AlreadyExists") continue;
        throw e;
      }
    }
    const u = podSpecUpdate(cur, p.input.spec ?? {});
    if ("forbidden" in u) throw podForbidden(p, u.forbidden);
    // Same pod: labels and annotations replaced; uid, nodeName and status (its address) kept.
    // Guarded by resourceVersion so a concurrent bind by the scheduler is not lost.
    const input: ObjectInput = { ...p.input, metadata: { ...p.input.metadata, resourceVersion: cur.metadata.resourceVersion }, spec: u.spec };
    try {
      return (await store.objects.apply(input)).action;
    } catch (e) {
      if (e instanceof ConflictError && (e.reason === "ResourceVersion" || e.reason === "Contention")) continue;
      throw e;
    }
  }
  throw new UserError(`${p.where}: Pod "${p.name}" kept changing while being applied; retry`, 1);
}

/** Applies validated objects; `report` gets kubectl's line for each (`pod/a created`). */
export async function applyAll(store: ClusterStore, objs: readonly Prepared[], report: (line: string) => void): Promise<void> {
  await precheck(store, objs);
  const namespaces = objs.filter((p) => p.info.kind === "Namespace");
  const rest = objs.filter((p) => p.info.kind !== "Namespace");
  for (const p of namespaces) {
    const { action } = await store.objects.apply(p.input);
    report(`${resourceName(p.info)}/${p.name} ${action}`);
  }
  // In Kubernetes "default" always exists; here it appears with the first write to the cluster.
  await ensureDefaultNamespace(store);
  for (const p of rest) {
    const action = p.info.kind === "Pod" ? await applyPod(store, p) : (await store.objects.apply(p.input)).action;
    report(`${resourceName(p.info)}/${p.name} ${action}`);
  }
}
