// Turning a manifest object into what apply writes: kind and apiVersion checked, namespace settled,
// validated with the API server's rules (every error with its field path), server-owned fields
// dropped and defaults filled in as the API server fills them.
import {
  defaultNetworkPolicy,
  NAMESPACE_NAME_LABEL,
  validateNamespace,
  validateNetworkPolicy,
  validatePod,
  type FieldError,
  type Validated,
} from "../../k8s/index.js";
import {
  BGP_CONFIGURATION,
  checkBGPConfiguration,
  checkBGPPeer,
  describeBgpErrors,
  maskBgpSecrets,
} from "../../store/bgp-objects.js";
import type { ObjectInput } from "../../store/types.js";
import { UserError } from "../errors.js";
import { kindOfManifest, SUPPORTED_MANIFEST_KINDS, type KindInfo } from "./kinds.js";
import type { ManifestObject } from "./manifest.js";

/** An object ready to be written, and where it came from. */
export interface Prepared {
  where: string;
  info: KindInfo;
  name: string;
  /** Set for namespaced kinds. */
  namespace?: string;
  /** As it is written on create (status: the initial status the API server would set). */
  input: ObjectInput;
}

/** kubectl's record of the manifest last applied: what a later apply compares against to see removed fields. */
export const LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration";

/** Metadata the server owns: a manifest copied from `get -o yaml` carries them, apply ignores them. */
const SERVER_META = [
  "uid",
  "resourceVersion",
  "creationTimestamp",
  "generation",
  "managedFields",
  "selfLink",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
];

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The object's identity for messages and deletes: kind, name and (namespaced kinds) namespace. */
export function identify(
  m: ManifestObject,
  flagNamespace: string | undefined,
): { info: KindInfo; name: string; namespace?: string } {
  const { where, value } = m;
  if (typeof value.apiVersion !== "string" || value.apiVersion === "")
    throw new UserError(`${where}: apiVersion not set`, 1);
  if (typeof value.kind !== "string" || value.kind === "") throw new UserError(`${where}: kind not set`, 1);
  const info = kindOfManifest(value.kind);
  if (!info)
    throw new UserError(`${where}: kind "${value.kind}" is not supported: weft manages ${SUPPORTED_MANIFEST_KINDS}`, 1);
  if (info.readOnly)
    throw new UserError(
      `${where}: ${info.kind} objects come from the weft agents' node leases; they cannot be applied`,
      1,
    );
  if (value.apiVersion !== info.apiVersion) {
    throw new UserError(
      `${where}: no matches for kind "${value.kind}" in version "${value.apiVersion}": use apiVersion ${info.apiVersion}`,
      1,
    );
  }
  const meta = value.metadata;
  if (!isMap(meta)) throw new UserError(`${where}: metadata not set: a ${info.kind} needs metadata.name`, 1);
  if (typeof meta.name !== "string" || meta.name === "")
    throw new UserError(`${where}: ${info.kind} is invalid: metadata.name: Required value: name is required`, 1);
  if (!info.namespaced) return { info, name: meta.name };
  const own = typeof meta.namespace === "string" && meta.namespace !== "" ? meta.namespace : undefined;
  if (own && flagNamespace && own !== flagNamespace) {
    throw new UserError(
      `${where}: the namespace from the provided object "${own}" does not match the namespace "${flagNamespace}": pass --namespace=${own} or remove it from the object`,
      1,
    );
  }
  return { info, name: meta.name, namespace: own ?? flagNamespace ?? "default" };
}

function invalid(where: string, kind: string, name: string, errors: readonly FieldError[]): UserError {
  return new UserError(
    `${where}: ${kind} "${name}" is invalid: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`,
    1,
  );
}

/**
 * Fields of `raw` that the schema does not know (absent from `parsed`), as field paths. The API
 * server rejects those (strict field validation): a typo like `ingres` must not silently become
 * a policy without ingress rules.
 */
function unknownFields(raw: unknown, parsed: unknown, path: string): string[] {
  if (Array.isArray(raw) && Array.isArray(parsed))
    return raw.flatMap((r, i) => unknownFields(r, parsed[i], `${path}[${i}]`));
  if (!isMap(raw) || !isMap(parsed)) return [];
  return Object.keys(raw).flatMap((k) =>
    k in parsed ? unknownFields(raw[k], parsed[k], `${path}.${k}`) : [`${path}.${k}`],
  );
}

function check<T>(where: string, kind: string, name: string, v: Validated<T>): T {
  if (!v.ok) throw invalid(where, kind, name, v.errors);
  return v.value;
}

/** Container ports get protocol TCP when none is given, as the API server defaults them. */
export function defaultPodSpec(spec: Record<string, unknown>): Record<string, unknown> {
  const out = structuredClone(spec);
  for (const c of Array.isArray(out.containers) ? out.containers : []) {
    if (!isMap(c) || !Array.isArray(c.ports)) continue;
    for (const p of c.ports) if (isMap(p) && p.protocol === undefined) p.protocol = "TCP";
  }
  return out;
}

/** Validates one manifest object and returns what apply writes; UserError naming the document and field path. */
export function prepareObject(m: ManifestObject, flagNamespace: string | undefined): Prepared {
  const { info, name, namespace } = identify(m, flagNamespace);
  const raw = structuredClone(m.value);
  const meta = { ...(raw.metadata as Record<string, unknown>) };
  for (const k of SERVER_META) delete meta[k];
  if (namespace) meta.namespace = namespace;
  else delete meta.namespace; // cluster-scoped: kubectl drops a namespace given there
  const obj: Record<string, unknown> = { ...raw, metadata: meta };
  delete obj.status; // status belongs to the status subresource: apply never writes it
  const annotations = isMap(meta.annotations) ? { ...(meta.annotations as Record<string, unknown>) } : undefined;
  if (annotations) delete annotations[LAST_APPLIED_ANNOTATION];
  // (A BGPPeer's password is not repeated in the annotation: `weft get` and kubectl print annotations.)
  const lastApplied =
    JSON.stringify(
      maskBgpSecrets({
        ...obj,
        kind: info.kind,
        metadata: {
          ...meta,
          ...(annotations && Object.keys(annotations).length ? { annotations } : { annotations: undefined }),
        },
      }),
    ) + "\n";
  meta.annotations = { ...(annotations ?? {}), [LAST_APPLIED_ANNOTATION]: lastApplied };

  let input: ObjectInput;
  switch (info.kind) {
    case "Namespace": {
      const ns = check(m.where, info.kind, name, validateNamespace(obj));
      input = {
        ...obj,
        apiVersion: info.apiVersion,
        kind: info.kind,
        metadata: { ...meta, name, labels: { ...(ns.metadata.labels ?? {}), [NAMESPACE_NAME_LABEL]: name } },
        status: { phase: "Active" },
      };
      break;
    }
    case "Pod": {
      const pod = check(m.where, info.kind, name, validatePod(obj));
      input = {
        ...obj,
        apiVersion: info.apiVersion,
        kind: info.kind,
        metadata: { ...meta, name },
        spec: defaultPodSpec(pod.spec as Record<string, unknown>),
        status: { phase: "Pending" },
      };
      break;
    }
    case "NetworkPolicy": {
      const np = check(m.where, info.kind, name, validateNetworkPolicy(obj));
      const unknown = unknownFields(obj.spec, np.spec, "spec");
      if (unknown.length)
        throw new UserError(
          `${m.where}: NetworkPolicy "${name}" is invalid: strict decoding error: unknown field ${unknown.map((u) => `"${u}"`).join(", ")}`,
          1,
        );
      const d = defaultNetworkPolicy(np);
      input = {
        ...obj,
        apiVersion: info.apiVersion,
        kind: info.kind,
        metadata: { ...meta, name },
        spec: JSON.parse(JSON.stringify(d.spec)) as Record<string, unknown>,
      };
      break;
    }
    case "BGPConfiguration":
    case "BGPPeer": {
      const c = info.kind === BGP_CONFIGURATION ? checkBGPConfiguration(obj) : checkBGPPeer(obj);
      if (!c.ok) throw new UserError(`${m.where}: ${describeBgpErrors(info.kind, name, c.errors)}`, 1);
      // Written as given (defaults stay implicit, so a later change of a default reaches every cluster).
      input = { ...obj, apiVersion: info.apiVersion, kind: info.kind, metadata: { ...meta, name } };
      break;
    }
    default:
      throw new UserError(`${m.where}: kind "${info.kind}" cannot be applied`, 1);
  }
  return { where: m.where, info, name, ...(namespace ? { namespace } : {}), input };
}
