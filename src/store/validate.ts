// Input checks and normalization shared by every store implementation.
import { cidrOrThrow, formatCidr, type Cidr } from "../net/cidr.js";
import { ipFamily } from "../net/ip.js";
import { ConflictError, InvalidError } from "./errors.js";
import {
  BACKENDS,
  DEFAULT_ENCRYPTION,
  DEFAULT_NODE_SUBNET_PREFIX,
  ENCRYPTION_TYPES,
  POD_CIDR_SOURCES,
  type BackendType,
  type BgpSettingsInput,
  type ClusterSettings,
  type ClusterSettingsInput,
  type EncryptionSettings,
  type NodeRegistration,
  type StoredObject,
} from "./types.js";

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function dnsSubdomain(what: string, name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    throw new InvalidError(
      `${what} "${String(name)}" is not valid: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters)`,
    );
  }
  return name;
}

export function dnsLabel(what: string, name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > 63 || !DNS_LABEL.test(name)) {
    throw new InvalidError(
      `${what} "${String(name)}" is not valid: use lower-case letters, digits and '-', starting and ending with a letter or digit (at most 63 characters)`,
    );
  }
  return name;
}

/**
 * A CIDR as the store keeps it (net/cidr.ts with the store's error): surrounding blanks ignored;
 * with strict (the default) host bits must be zero, so "10.1.2.3/16" is refused with the network meant.
 */
export function parseCidr(text: string, strict = true): Cidr {
  return cidrOrThrow(text.trim(), { hostBits: strict ? "reject" : "clear" }, (m) => new InvalidError(m));
}

export function normalizeSettings(input: ClusterSettingsInput): ClusterSettings {
  if (!Array.isArray(input.clusterCIDRs) || input.clusterCIDRs.length === 0 || input.clusterCIDRs.length > 2) {
    throw new InvalidError("--cluster-cidr takes one IPv4 and/or one IPv6 CIDR, e.g. 10.244.0.0/16,fd00:10:244::/48");
  }
  const cidrs = input.clusterCIDRs.map((c) => parseCidr(c));
  if (cidrs.length === 2 && cidrs[0].family === cidrs[1].family) {
    throw new InvalidError(
      `cluster CIDRs ${input.clusterCIDRs.join(",")} are both IPv${cidrs[0].family}: give at most one per family`,
    );
  }
  if (!(BACKENDS as readonly string[]).includes(input.backend)) {
    throw new InvalidError(`backend "${String(input.backend)}" is not one of ${BACKENDS.join(", ")}`);
  }
  const prefix = {
    v4: input.nodeSubnetPrefix?.v4 ?? DEFAULT_NODE_SUBNET_PREFIX.v4,
    v6: input.nodeSubnetPrefix?.v6 ?? DEFAULT_NODE_SUBNET_PREFIX.v6,
  };
  for (const c of cidrs) {
    const p = c.family === 4 ? prefix.v4 : prefix.v6;
    const max = c.family === 4 ? 30 : 126;
    if (!Number.isInteger(p) || p < c.prefix || p > max) {
      throw new InvalidError(
        `node subnet size /${p} does not fit IPv${c.family} cluster CIDR ${formatCidr(c)}: it must be between /${c.prefix} and /${max}`,
      );
    }
  }
  if (input.mtu !== undefined) {
    const min = cidrs.some((c) => c.family === 6) ? 1280 : 576;
    if (!Number.isInteger(input.mtu) || input.mtu < min || input.mtu > 65535) {
      throw new InvalidError(`MTU ${input.mtu} is out of range: it must be an integer between ${min} and 65535`);
    }
  }
  const podCIDRSource = input.podCIDRSource ?? "weft";
  if (!(POD_CIDR_SOURCES as readonly string[]).includes(podCIDRSource)) {
    throw new InvalidError(
      `podCIDRSource "${String(podCIDRSource)}" is not one of ${POD_CIDR_SOURCES.join(", ")} ("node" takes each Node's spec.podCIDRs from kube-controller-manager)`,
    );
  }
  if (input.ipMasq !== undefined && typeof input.ipMasq !== "boolean") {
    throw new InvalidError(`ipMasq must be true or false, not ${JSON.stringify(input.ipMasq)}`);
  }
  const out: ClusterSettings = {
    clusterCIDRs: cidrs.map(formatCidr),
    backend: input.backend as BackendType,
    nodeSubnetPrefix: prefix,
    podCIDRSource,
    ipMasq: input.ipMasq ?? true,
    encryption: normalizeEncryption(input.encryption),
  };
  if (input.mtu !== undefined) out.mtu = input.mtu;
  if (input.bgp !== undefined) out.bgp = normalizeBgp(input.bgp, out.backend);
  return out;
}

/** The encryption setting: absent = none (strict, no node-to-node), so older settings read as before. */
export function normalizeEncryption(input: unknown): EncryptionSettings {
  if (input === undefined) return { ...DEFAULT_ENCRYPTION };
  if (typeof input !== "object" || input === null || Array.isArray(input))
    throw new InvalidError(
      `encryption must be an object such as {"type": "wireguard", "strict": true}, not ${JSON.stringify(input)}`,
    );
  const { type, strict, nodeToNode, ...rest } = input as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length)
    throw new InvalidError(`encryption.${unknown[0]}: unknown field (known: type, strict, nodeToNode)`);
  if (typeof type !== "string" || !(ENCRYPTION_TYPES as readonly string[]).includes(type))
    throw new InvalidError(`encryption.type ${JSON.stringify(type)} is not one of ${ENCRYPTION_TYPES.join(", ")}`);
  for (const [k, v] of [
    ["strict", strict],
    ["nodeToNode", nodeToNode],
  ] as const)
    if (v !== undefined && typeof v !== "boolean")
      throw new InvalidError(`encryption.${k} must be true or false, not ${JSON.stringify(v)}`);
  return {
    type: type as EncryptionSettings["type"],
    strict: (strict as boolean | undefined) ?? DEFAULT_ENCRYPTION.strict,
    nodeToNode: (nodeToNode as boolean | undefined) ?? DEFAULT_ENCRYPTION.nodeToNode,
  };
}

/** The bgp backend's settings: checked here, at init, so a bad value never reaches BIRD. */
function normalizeBgp(bgp: unknown, backend: BackendType): BgpSettingsInput {
  if (typeof bgp !== "object" || bgp === null || Array.isArray(bgp))
    throw new InvalidError(`bgp must be an object such as {"asNumber": 64512}, not ${JSON.stringify(bgp)}`);
  if (backend !== "bgp") throw new InvalidError(`bgp settings apply only to backend bgp, not ${backend}`);
  const { asNumber, ...rest } = bgp as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) throw new InvalidError(`bgp.${unknown[0]}: unknown field (known: asNumber)`);
  if (asNumber === undefined) return {};
  if (typeof asNumber !== "number" || !Number.isInteger(asNumber) || asNumber < 1 || asNumber > 4294967295)
    throw new InvalidError(
      `bgp.asNumber: ${JSON.stringify(asNumber)} is not an AS number (an integer 1..4294967295, e.g. 64512)`,
    );
  return { asNumber };
}

export function normalizeRegistration(reg: NodeRegistration): NodeRegistration {
  dnsSubdomain("node name", reg.name);
  if (!Array.isArray(reg.addresses))
    throw new InvalidError(`node ${reg.name}: addresses must be a list of IP addresses`);
  const fams = new Set<number>();
  for (const a of reg.addresses) {
    const f = ipFamily(a);
    if (f === null) throw new InvalidError(`node ${reg.name}: underlay address "${a}" is not an IP address`);
    if (fams.has(f))
      throw new InvalidError(`node ${reg.name}: more than one IPv${f} underlay address (${reg.addresses.join(", ")})`);
    fams.add(f);
  }
  const backendData: Record<string, string> = {};
  for (const [k, v] of Object.entries(reg.backendData ?? {})) {
    if (typeof v !== "string") throw new InvalidError(`node ${reg.name}: backend data "${k}" must be a string`);
    backendData[k] = v;
  }
  return { name: reg.name, addresses: [...reg.addresses], backendData };
}

export function wholeSeconds(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new InvalidError(`${what} must be a whole number of seconds >= 1, got ${v}`);
  return v;
}

/** JSON with object keys sorted, for equality checks that ignore key order. */
export function stableStringify(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) => {
    if (val && typeof val === "object" && !Array.isArray(val)) {
      return Object.fromEntries(
        Object.entries(val as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      );
    }
    return val;
  });
}

/** Labels and annotations: a map of strings to strings, or absent. */
export function checkStringMap(what: string, m: unknown): void {
  if (m === undefined) return;
  if (typeof m !== "object" || m === null || Array.isArray(m) || Object.values(m).some((v) => typeof v !== "string")) {
    throw new InvalidError(`${what} must map strings to strings`);
  }
}

/** The answer to a write whose resourceVersion is no longer current. */
export function staleConflict(what: string, rv: string, cur?: StoredObject): ConflictError {
  return new ConflictError(
    "ResourceVersion",
    `${what} has been modified (you have resourceVersion ${rv}${cur ? `, the store has ${cur.metadata.resourceVersion}` : ""}): read it again and re-apply your change`,
  );
}
