// `weft apply`: every object is validated (and every precondition checked) before the first write;
// then Namespaces are written first, then the rest in file order, each reported like kubectl.
import { NAMESPACE_NAME_LABEL } from "../../k8s/index.js";
import {
  ConflictError,
  isStoreError,
  type ApplyAction,
  type ClusterStore,
  type ObjectInput,
  type StoredObject,
} from "../../store/types.js";
import {
  bgpContextProblems,
  BGP_KINDS,
  checkBGPConfiguration,
  checkBGPPeer,
  describeBgpErrors,
  BGP_CONFIGURATION,
} from "../../store/bgp-objects.js";
import { UserError } from "../errors.js";
import { resourceName } from "./kinds.js";
import { defaultPodSpec, LAST_APPLIED_ANNOTATION, type Prepared } from "./prepare.js";

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

function withoutImages(spec: unknown): Record<string, unknown> {
  const s = plain(spec) as Record<string, unknown>;
  for (const c of Array.isArray(s.containers) ? s.containers : []) if (isMap(c)) delete c.image;
  return s;
}

/** The first path where `want` says something `have` does not (fields `want` leaves out are not compared). */
export function firstNotContained(want: unknown, have: unknown, path: string): string | undefined {
  if (Array.isArray(want)) {
    if (!Array.isArray(have) || have.length !== want.length) return path;
    for (let i = 0; i < want.length; i++) {
      const d = firstNotContained(want[i], have[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (isMap(want)) {
    if (!isMap(have)) return path;
    for (const k of Object.keys(want).sort()) {
      const d = firstNotContained(want[k], have[k], `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  return want === have ? undefined : path;
}

/** The first field the last applied manifest had and the new one drops. */
function firstRemoved(last: unknown, now: unknown, path: string): string | undefined {
  if (Array.isArray(last) && Array.isArray(now) && last.length === now.length) {
    for (let i = 0; i < last.length; i++) {
      const d = firstRemoved(last[i], now[i], `${path}[${i}]`);
      if (d) return d;
    }
  } else if (isMap(last) && isMap(now)) {
    for (const k of Object.keys(last).sort()) {
      if (!(k in now)) return `${path}.${k}`;
      const d = firstRemoved(last[k], now[k], `${path}.${k}`);
      if (d) return d;
    }
  }
  return undefined;
}

/** The spec of the manifest last applied to this object (kubectl's annotation), if any. */
function lastAppliedSpec(stored: StoredObject): Record<string, unknown> | undefined {
  const text = stored.metadata.annotations?.[LAST_APPLIED_ANNOTATION];
  if (!text) return undefined;
  try {
    const spec = (JSON.parse(text) as { spec?: unknown }).spec;
    return isMap(spec) ? defaultPodSpec(spec) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The spec to write when a Pod is applied over a stored one, or the field that may not change.
 * As in Kubernetes only container images may change in place. Fields the manifest leaves out keep
 * their stored values (spec.nodeName set by the scheduler, defaults a Kubernetes API server
 * filled in); leaving out a field the last applied manifest set is a change (kubectl's rule).
 */
export function podSpecUpdate(
  stored: StoredObject,
  wanted: Record<string, unknown>,
): { spec: Record<string, unknown> } | { forbidden: string } {
  const want = withoutImages(wanted);
  const cur = withoutImages(stored.spec);
  const changed = firstNotContained(want, cur, "spec");
  if (changed) return { forbidden: changed };
  const last = lastAppliedSpec(stored);
  const removed = last ? firstRemoved(withoutImages(last), want, "spec") : undefined;
  if (removed) return { forbidden: removed };
  // The stored spec, with the images the manifest names.
  const spec = plain(stored.spec) as Record<string, unknown>;
  const wantContainers = Array.isArray(wanted.containers) ? wanted.containers : [];
  (Array.isArray(spec.containers) ? spec.containers : []).forEach((c: unknown, i: number) => {
    const w: unknown = wantContainers[i];
    if (isMap(c) && isMap(w) && w.image !== undefined) c.image = w.image;
  });
  return { spec };
}

function podForbidden(p: Prepared, field: string): UserError {
  return new UserError(
    `${p.where}: Pod "${p.name}" is invalid: spec: Forbidden: pod updates may not change fields other than metadata.labels, metadata.annotations and spec.containers[*].image (${field} differs): delete the pod and apply it again`,
    1,
  );
}

async function getOrUndefined(
  store: ClusterStore,
  kind: string,
  name: string,
  namespace?: string,
): Promise<StoredObject | undefined> {
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
      apiVersion: "v1",
      kind: "Namespace",
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
    if (!known.has(p.namespace))
      known.set(p.namespace, (await getOrUndefined(store, "Namespace", p.namespace)) !== undefined);
    if (!known.get(p.namespace))
      throw new UserError(
        `${p.where}: namespaces "${p.namespace}" not found: create the Namespace first (or apply it in the same input)`,
        1,
      );
  }
  await checkBgpContext(store, objs);
  for (const p of objs) {
    if (p.info.kind !== "Pod") continue;
    const cur = await getOrUndefined(store, "Pod", p.name, p.namespace);
    if (!cur) continue;
    const u = podSpecUpdate(cur, p.input.spec ?? {});
    if ("forbidden" in u) throw podForbidden(p, u.forbidden);
  }
}

/** BGP objects against the cluster: announced prefixes vs the cluster CIDRs, peer addresses vs the nodes' subnets. */
async function checkBgpContext(store: ClusterStore, objs: readonly Prepared[]): Promise<void> {
  const bgp = objs.filter((p) => (BGP_KINDS as readonly string[]).includes(p.info.kind));
  if (bgp.length === 0) return;
  const settings = await store.getClusterSettings();
  const ctx = { clusterCIDRs: settings?.clusterCIDRs ?? [], nodes: await store.listNodes() };
  for (const p of bgp) {
    const c = p.info.kind === BGP_CONFIGURATION ? checkBGPConfiguration(p.input) : checkBGPPeer(p.input);
    const errs = c.ok ? bgpContextProblems(p.info.kind, c.value, ctx) : c.errors;
    if (errs.length) throw new UserError(`${p.where}: ${describeBgpErrors(p.info.kind, p.name, errs)}`, 1);
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
    const input: ObjectInput = {
      ...p.input,
      metadata: { ...p.input.metadata, resourceVersion: cur.metadata.resourceVersion },
      spec: u.spec,
    };
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
export async function applyAll(
  store: ClusterStore,
  objs: readonly Prepared[],
  report: (line: string) => void,
): Promise<void> {
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
