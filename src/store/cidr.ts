// Pure CIDR arithmetic for carving per-node pod subnets out of the cluster CIDRs, IPv4 and IPv6.
// Addresses are BigInts so the same code handles both families.
import { isIP } from "node:net";
import { InvalidError } from "./errors.js";
import { formatIpValue } from "../net/ip.js";

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  /** The network address (host bits zero). */
  base: bigint;
  prefix: number;
}

const bits = (f: Family): number => (f === 4 ? 32 : 128);

export function parseIp(text: string): { family: Family; value: bigint } {
  const fam = isIP(text);
  if (fam === 4) {
    return { family: 4, value: text.split(".").reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n) };
  }
  if (fam === 6) return { family: 6, value: parseIpv6(text) };
  throw new InvalidError(`"${text}" is not an IP address`);
}

function parseIpv6(text: string): bigint {
  let s = text.toLowerCase();
  const pct = s.indexOf("%");
  if (pct >= 0) s = s.slice(0, pct);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const n = parseIp(v4[1]).value;
    s = s.slice(0, v4.index) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function formatIp(family: Family, value: bigint): string {
  return formatIpValue(family, value);
}

/** Parses ADDRESS/PREFIX. With strict (the default) host bits must be zero: "10.1.2.3/16" is refused. */
export function parseCidr(text: string, strict = true): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m) throw new InvalidError(`"${text}" is not in CIDR notation (address/prefix, e.g. 10.244.0.0/16)`);
  const { family, value } = parseIp(m[1]);
  const prefix = Number(m[2]);
  if (prefix > bits(family)) throw new InvalidError(`"${text}": prefix /${prefix} is longer than an IPv${family} address`);
  const base = value & mask(family, prefix);
  if (strict && base !== value) {
    throw new InvalidError(`"${text}" has host bits set: did you mean ${formatCidr({ family, base, prefix })}?`);
  }
  return { family, base, prefix };
}

function mask(family: Family, prefix: number): bigint {
  const b = BigInt(bits(family));
  const all = (1n << b) - 1n;
  return all ^ ((1n << (b - BigInt(prefix))) - 1n);
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.base)}/${c.prefix}`;
}

/** Canonical text for a CIDR (lower-case, compressed IPv6): the form used in store keys. */
export function canonicalCidr(text: string): string {
  return formatCidr(parseCidr(text));
}

export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.prefix >= outer.prefix &&
    (inner.base & mask(outer.family, outer.prefix)) === outer.base;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.prefix <= b.prefix ? cidrContains(a, b) : cidrContains(b, a);
}

/** How many /subnetPrefix subnets fit into the cluster CIDR. */
export function subnetCount(cluster: Cidr, subnetPrefix: number): bigint {
  if (subnetPrefix < cluster.prefix || subnetPrefix > bits(cluster.family)) {
    throw new InvalidError(
      `node subnet size /${subnetPrefix} does not fit in ${formatCidr(cluster)}: it must be between /${cluster.prefix} and /${bits(cluster.family)}`,
    );
  }
  return 1n << BigInt(subnetPrefix - cluster.prefix);
}

/** The index-th /subnetPrefix subnet of the cluster CIDR (0-based). */
export function nthSubnet(cluster: Cidr, subnetPrefix: number, index: bigint): Cidr {
  const n = subnetCount(cluster, subnetPrefix);
  if (index < 0n || index >= n) throw new RangeError(`subnet index ${index} is outside 0..${n - 1n}`);
  const step = 1n << BigInt(bits(cluster.family) - subnetPrefix);
  return { family: cluster.family, base: cluster.base + index * step, prefix: subnetPrefix };
}

/** The index of subnet in the cluster CIDR, or undefined if it is not one of its /subnetPrefix subnets. */
export function subnetIndex(cluster: Cidr, subnetPrefix: number, subnet: Cidr): bigint | undefined {
  if (subnet.prefix !== subnetPrefix || !cidrContains(cluster, subnet)) return undefined;
  return (subnet.base - cluster.base) >> BigInt(bits(cluster.family) - subnetPrefix);
}

/**
 * Picks a free /subnetPrefix subnet of cluster that is not in taken (canonical CIDR texts).
 * The search starts at a position derived from seed (e.g. the node name) so concurrent claimers
 * spread over the pool instead of all racing for the first subnet, and probes linearly from there:
 * at most taken.size + 1 probes, so it is cheap even for a huge IPv6 pool.
 */
export function pickFreeSubnet(cluster: Cidr, subnetPrefix: number, taken: ReadonlySet<string>, seed: string): Cidr | undefined {
  const n = subnetCount(cluster, subnetPrefix);
  const start = hash64(seed) % n;
  const limit = BigInt(taken.size) + 1n < n ? BigInt(taken.size) + 1n : n;
  for (let i = 0n; i < limit; i++) {
    const c = nthSubnet(cluster, subnetPrefix, (start + i) % n);
    if (!taken.has(formatCidr(c))) return c;
  }
  return undefined;
}

/** FNV-1a, 64 bit: a stable spread, not a security boundary. */
export function hash64(s: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(s, "utf8")) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}
