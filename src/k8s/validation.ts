// Validation of Namespace, Pod and NetworkPolicy objects with the Kubernetes apiserver's rules
// (pkg/apis/networking/validation, apimachinery's label and name rules). Every error names the
// field path, e.g. `spec.ingress[0].from[1].ipBlock.except[0]: must be a strict subset of cidr`.
import type { z } from "zod";
import {
  NamespaceSchema,
  NetworkPolicySchema,
  PodSchema,
  PROTOCOLS,
  type LabelSelector,
  type Namespace,
  type NetworkPolicy,
  type NetworkPolicyPeer,
  type NetworkPolicyPort,
  type ObjectMeta,
  type Pod,
} from "./types.js";
import { cidrOrNull, isStrictSubset } from "../net/cidr.js";
import { parseIp } from "../net/ip.js";

export interface FieldError {
  path: string;
  message: string;
}

export type Validated<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

/** All errors of a failed validation, one per line, for a person to act on. */
export function formatErrors(errors: readonly FieldError[]): string {
  return errors.map((e) => `${e.path}: ${e.message}`).join("\n");
}

export class ValidationError extends Error {
  constructor(
    readonly kind: string,
    readonly objectName: string,
    readonly errors: FieldError[],
  ) {
    super(`${kind} "${objectName}" is invalid: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`);
    this.name = "ValidationError";
  }
}

// ---- names and labels (k8s.io/apimachinery/pkg/util/validation) ----

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Problems with a DNS-1123 label (namespace names): empty list when valid. */
export function dns1123Label(v: string): string[] {
  const errs: string[] = [];
  if (v.length > 63) errs.push("must be no more than 63 characters");
  if (!DNS1123_LABEL.test(v)) {
    errs.push(
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
    );
  }
  return errs;
}

/** Problems with a DNS-1123 subdomain (pod and policy names). */
export function dns1123Subdomain(v: string): string[] {
  const errs: string[] = [];
  if (v.length > 253) errs.push("must be no more than 253 characters");
  if (!DNS1123_SUBDOMAIN.test(v)) {
    errs.push(
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    );
  }
  return errs;
}

/** Problems with a label key / qualified name: [prefix/]name. */
export function qualifiedName(v: string): string[] {
  const parts = v.split("/");
  let name = v;
  const errs: string[] = [];
  if (parts.length === 2) {
    const [prefix, n] = parts;
    name = n;
    if (prefix.length === 0) errs.push("prefix part must be non-empty");
    else for (const e of dns1123Subdomain(prefix)) errs.push(`prefix part ${e}`);
  } else if (parts.length > 2) {
    return [
      "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/'",
    ];
  }
  if (name.length === 0) errs.push("name part must be non-empty");
  else if (name.length > 63) errs.push("name part must be no more than 63 characters");
  if (name.length > 0 && !QUALIFIED_NAME.test(name)) {
    errs.push(
      "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    );
  }
  return errs;
}

export function labelValue(v: string): string[] {
  const errs: string[] = [];
  if (v.length > 63) errs.push("must be no more than 63 characters");
  if (!LABEL_VALUE.test(v)) {
    errs.push(
      "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    );
  }
  return errs;
}

/** IANA service names (named ports): 1-15 of [a-z0-9-], at least one letter, no '--', no '-' at either end. */
export function ianaSvcName(v: string): string[] {
  const errs: string[] = [];
  if (v.length === 0 || v.length > 15) errs.push("must be no more than 15 characters");
  if (!/^[-a-z0-9]+$/.test(v)) errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
  if (v.includes("--")) errs.push("must not contain consecutive hyphens");
  if (!/[a-z]/.test(v)) errs.push("must contain at least one letter (a-z)");
  if (v.startsWith("-") || v.endsWith("-")) errs.push("must not begin or end with a hyphen");
  return errs;
}

// ---- helpers ----

class Errs {
  readonly list: FieldError[] = [];
  add(path: string, message: string): void {
    this.list.push({ path, message });
  }
  addAll(path: string, messages: readonly string[], value?: string): void {
    for (const m of messages) this.add(path, value === undefined ? m : `Invalid value: "${value}": ${m}`);
  }
}

function zodPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || "(root)";
}

function fromZod(err: z.ZodError): FieldError[] {
  return err.issues.map((i) => ({ path: zodPath(i.path), message: i.message }));
}

function validateMeta(meta: ObjectMeta, e: Errs, nameRule: (v: string) => string[], namespaced: boolean): void {
  if (!meta.name) e.add("metadata.name", "Required value: name is required");
  else e.addAll("metadata.name", nameRule(meta.name), meta.name);
  if (namespaced && meta.namespace !== undefined && meta.namespace !== "") {
    e.addAll("metadata.namespace", dns1123Label(meta.namespace), meta.namespace);
  }
  if (!namespaced && meta.namespace) e.add("metadata.namespace", "Forbidden: not allowed on this type");
  validateLabels(meta.labels, "metadata.labels", e);
  for (const k of Object.keys(meta.annotations ?? {})) {
    const ke = qualifiedName(k.toLowerCase());
    e.addAll(`metadata.annotations`, ke, k);
  }
}

function validateLabels(labels: Record<string, string> | undefined, path: string, e: Errs): void {
  for (const [k, v] of Object.entries(labels ?? {})) {
    e.addAll(path, qualifiedName(k), k);
    e.addAll(path, labelValue(v), v);
  }
}

/** Label selector rules from apimachinery's ValidateLabelSelector. */
export function validateLabelSelector(sel: LabelSelector, path: string, e: Errs = new Errs()): FieldError[] {
  (sel.matchExpressions ?? []).forEach((req, i) => {
    const p = `${path}.matchExpressions[${i}]`;
    switch (req.operator) {
      case "In":
      case "NotIn":
        if (!req.values || req.values.length === 0)
          e.add(`${p}.values`, "Required value: must be specified when `operator` is 'In' or 'NotIn'");
        break;
      case "Exists":
      case "DoesNotExist":
        if (req.values && req.values.length > 0)
          e.add(`${p}.values`, "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'");
        break;
      default:
        e.add(`${p}.operator`, `Invalid value: "${req.operator}": not a valid selector operator`);
    }
    e.addAll(`${p}.key`, qualifiedName(req.key), req.key);
    (req.values ?? []).forEach((v, j) => e.addAll(`${p}.values[${j}]`, labelValue(v), v));
  });
  validateLabels(sel.matchLabels, `${path}.matchLabels`, e);
  return e.list;
}

function validatePort(port: NetworkPolicyPort, path: string, e: Errs): void {
  if (port.protocol !== undefined && !(PROTOCOLS as readonly string[]).includes(port.protocol)) {
    e.add(`${path}.protocol`, `Unsupported value: "${port.protocol}": supported values: "SCTP", "TCP", "UDP"`);
  }
  if (port.port !== undefined) {
    if (typeof port.port === "number") {
      if (port.port < 1 || port.port > 65535)
        e.add(`${path}.port`, `Invalid value: ${port.port}: must be between 1 and 65535, inclusive`);
      if (port.endPort !== undefined) {
        if (port.endPort < port.port)
          e.add(`${path}.endPort`, `Invalid value: ${port.endPort}: must be greater than or equal to \`port\``);
        if (port.endPort < 1 || port.endPort > 65535)
          e.add(`${path}.endPort`, `Invalid value: ${port.endPort}: must be between 1 and 65535, inclusive`);
      }
    } else {
      e.addAll(`${path}.port`, ianaSvcName(port.port), port.port);
      if (port.endPort !== undefined)
        e.add(`${path}.endPort`, "Invalid value: may not be specified when `port` is non-numeric");
    }
  } else if (port.endPort !== undefined) {
    e.add(`${path}.endPort`, `Invalid value: ${port.endPort}: may not be specified when \`port\` is not specified`);
  }
}

function validatePeer(peer: NetworkPolicyPeer, path: string, e: Errs): void {
  let n = 0;
  if (peer.podSelector) {
    n++;
    validateLabelSelector(peer.podSelector, `${path}.podSelector`, e);
  }
  if (peer.namespaceSelector) {
    n++;
    validateLabelSelector(peer.namespaceSelector, `${path}.namespaceSelector`, e);
  }
  if (peer.ipBlock) {
    n++;
    const b = peer.ipBlock;
    const cidr = cidrOrNull(b.cidr, { hostBits: "clear" }); // like Go's net.ParseCIDR
    if (!b.cidr) e.add(`${path}.ipBlock.cidr`, "Required value");
    else if (!cidr)
      e.add(`${path}.ipBlock.cidr`, `Invalid value: "${b.cidr}": must be a valid CIDR (e.g. 10.0.0.0/16 or fd00::/64)`);
    (b.except ?? []).forEach((x, i) => {
      const p = `${path}.ipBlock.except[${i}]`;
      const ex = cidrOrNull(x, { hostBits: "clear" });
      if (!ex) e.add(p, `Invalid value: "${x}": must be a valid CIDR (e.g. 10.0.0.0/24)`);
      else if (cidr && !isStrictSubset(cidr, ex))
        e.add(p, `Invalid value: "${x}": must be a strict subset of \`cidr\``);
    });
  }
  if (n === 0) e.add(path, "Required value: must specify a peer");
  else if (peer.ipBlock && n > 1) e.add(path, "Forbidden: may not specify both ipBlock and another peer");
}

// ---- objects ----

function check<T>(schema: z.ZodType<T>, obj: unknown, rest: (v: T, e: Errs) => void): Validated<T> {
  const r = schema.safeParse(obj);
  if (!r.success) return { ok: false, errors: fromZod(r.error) };
  const e = new Errs();
  rest(r.data, e);
  return e.list.length ? { ok: false, errors: e.list } : { ok: true, value: r.data };
}

export function validateNamespace(obj: unknown): Validated<Namespace> {
  return check(NamespaceSchema, obj, (ns, e) => validateMeta(ns.metadata, e, dns1123Label, false));
}

export function validatePod(obj: unknown): Validated<Pod> {
  return check(PodSchema, obj, (pod, e) => {
    validateMeta(pod.metadata, e, dns1123Subdomain, true);
    if (pod.spec.nodeName) e.addAll("spec.nodeName", dns1123Subdomain(pod.spec.nodeName), pod.spec.nodeName);
    if (pod.spec.containers.length === 0) e.add("spec.containers", "Required value");
    const names = new Set<string>();
    pod.spec.containers.forEach((c, i) => {
      const p = `spec.containers[${i}]`;
      e.addAll(`${p}.name`, dns1123Label(c.name), c.name);
      (c.ports ?? []).forEach((port, j) => {
        const pp = `${p}.ports[${j}]`;
        if (port.name !== undefined) {
          e.addAll(`${pp}.name`, ianaSvcName(port.name), port.name);
          if (names.has(port.name)) e.add(`${pp}.name`, `Duplicate value: "${port.name}"`);
          names.add(port.name);
        }
        if (port.containerPort < 1 || port.containerPort > 65535) {
          e.add(`${pp}.containerPort`, `Invalid value: ${port.containerPort}: must be between 1 and 65535, inclusive`);
        }
        if (port.protocol !== undefined && !(PROTOCOLS as readonly string[]).includes(port.protocol)) {
          e.add(`${pp}.protocol`, `Unsupported value: "${port.protocol}": supported values: "SCTP", "TCP", "UDP"`);
        }
      });
    });
    const st = pod.status;
    if (st?.podIP !== undefined && st.podIP !== "" && !parseIp(st.podIP))
      e.add("status.podIP", `Invalid value: "${st.podIP}": must be a valid IP address`);
    (st?.podIPs ?? []).forEach((p, i) => {
      if (!parseIp(p.ip)) e.add(`status.podIPs[${i}].ip`, `Invalid value: "${p.ip}": must be a valid IP address`);
    });
  });
}

export function validateNetworkPolicy(obj: unknown): Validated<NetworkPolicy> {
  return check(NetworkPolicySchema, obj, (np, e) => {
    validateMeta(np.metadata, e, dns1123Subdomain, true);
    const s = np.spec;
    validateLabelSelector(s.podSelector, "spec.podSelector", e);
    (s.ingress ?? []).forEach((r, i) => {
      (r.ports ?? []).forEach((p, j) => validatePort(p, `spec.ingress[${i}].ports[${j}]`, e));
      (r.from ?? []).forEach((p, j) => validatePeer(p, `spec.ingress[${i}].from[${j}]`, e));
    });
    (s.egress ?? []).forEach((r, i) => {
      (r.ports ?? []).forEach((p, j) => validatePort(p, `spec.egress[${i}].ports[${j}]`, e));
      (r.to ?? []).forEach((p, j) => validatePeer(p, `spec.egress[${i}].to[${j}]`, e));
    });
    const seen = new Set<string>();
    (s.policyTypes ?? []).forEach((t, i) => {
      if (t !== "Ingress" && t !== "Egress")
        e.add(`spec.policyTypes[${i}]`, `Unsupported value: "${t}": supported values: "Egress", "Ingress"`);
      else if (seen.has(t)) e.add(`spec.policyTypes[${i}]`, `Duplicate value: "${t}"`);
      seen.add(t);
    });
    if ((s.policyTypes?.length ?? 0) > 2)
      e.add("spec.policyTypes", "Invalid value: may not specify more than two policyTypes");
  });
}

/** Like validateX but throws a ValidationError (for callers that treat invalid input as a user error). */
export function parseOrThrow<T>(kind: string, v: Validated<T>, obj: unknown): T {
  if (v.ok) return v.value;
  const name = (obj as { metadata?: { name?: unknown } } | null)?.metadata?.name;
  throw new ValidationError(kind, typeof name === "string" ? name : "?", v.errors);
}
