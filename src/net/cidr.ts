// IP prefixes (CIDRs): the one parser, containment and overlap, address ranges with holes
// (NetworkPolicy ipBlock.except), and carving a cluster CIDR into per-node subnets. The parser
// returns a result carrying a specific message; cidrOrNull and cidrOrThrow are the two contracts
// callers need (Kubernetes validation collects nulls, stores and the CLI throw their own errors).
import { familyBits, formatIp, parseIp, type ErrorFactory, type IpAddr, type IpFamily } from "./ip.js";

export interface Cidr {
  readonly family: IpFamily;
  /** The network address (host bits zero). */
  readonly base: bigint;
  readonly prefix: number;
}

/** An inclusive range of addresses of one family. */
export interface AddrRange {
  readonly family: IpFamily;
  readonly first: bigint;
  readonly last: bigint;
}

export interface CidrOptions {
  /**
   * "reject" (the default): "10.1.2.3/16" is refused with the network it meant, for configured
   * pools where a typo must not silently become another network. "clear": host bits are dropped,
   * like Go's net.ParseCIDR (NetworkPolicy ipBlock, routes and addresses read from the kernel).
   */
  hostBits?: "reject" | "clear";
  /** A bare address is read as a host prefix (/32, /128). Off by default. */
  bareAddress?: boolean;
}

/**
 * How iproute2 prints prefixes and how the kernel keeps them: a host route's dst is a bare address,
 * and an interface address keeps its host bits (10.244.3.7/24). Compared as the prefix they mean.
 */
export const KERNEL_PREFIX: CidrOptions = { hostBits: "clear", bareAddress: true };

export type CidrResult = { ok: true; cidr: Cidr } | { ok: false; error: string };

export class InvalidCidr extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidCidr";
  }
}

function mask(family: IpFamily, prefix: number): bigint {
  const b = BigInt(familyBits(family));
  return ((1n << b) - 1n) ^ ((1n << (b - BigInt(prefix))) - 1n);
}

/** The one CIDR parser. The error text names the input and what is wrong with it. */
export function parseCidr(text: string, opts: CidrOptions = {}): CidrResult {
  const fail = (error: string): CidrResult => ({ ok: false, error });
  if (typeof text !== "string") return fail(`${String(text)} is not a CIDR (address/prefix, e.g. 10.244.0.0/16)`);
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  let addrText: string;
  let prefixText: string | undefined;
  if (m) [addrText, prefixText] = [m[1], m[2]];
  else if (opts.bareAddress && !text.includes("/")) addrText = text;
  else return fail(`"${text}" is not a CIDR (address/prefix, e.g. 10.244.0.0/16)`);
  const a = parseIp(addrText);
  if (!a) return fail(`"${text}": "${addrText}" is not an IP address`);
  const bits = familyBits(a.family);
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) return fail(`"${text}": prefix /${prefix} is too long for IPv${a.family} (at most /${bits})`);
  const base = a.value & mask(a.family, prefix);
  if (base !== a.value && opts.hostBits !== "clear") {
    const net = formatCidr({ family: a.family, base, prefix });
    return fail(`"${text}" has host bits set; the network is ${net}: did you mean ${net}?`);
  }
  return { ok: true, cidr: { family: a.family, base, prefix } };
}

export function cidrOrNull(text: string, opts: CidrOptions = {}): Cidr | null {
  const r = parseCidr(text, opts);
  return r.ok ? r.cidr : null;
}

/** parseCidr for callers whose contract is to throw: the error is theirs (default InvalidCidr). */
export function cidrOrThrow(
  text: string,
  opts: CidrOptions = {},
  toError: ErrorFactory = (m) => new InvalidCidr(m),
): Cidr {
  const r = parseCidr(text, opts);
  if (!r.ok) throw toError(r.error);
  return r.cidr;
}

/** "10.244.0.0/16", "fd00:10:244::/48": the form used in store keys and compared as a string. */
export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.base)}/${c.prefix}`;
}

/** Canonical text of a CIDR; throws InvalidCidr when it is not one (under the given options). */
export function canonicalCidr(text: string, opts: CidrOptions = {}): string {
  return formatCidr(cidrOrThrow(text, opts));
}

/** True when the address lies in the prefix (false for the other family). */
export function cidrHas(c: Cidr, a: IpAddr): boolean {
  return c.family === a.family && (a.value & mask(c.family, c.prefix)) === c.base;
}

/** True when inner lies within outer (equal counts). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return (
    outer.family === inner.family &&
    inner.prefix >= outer.prefix &&
    (inner.base & mask(outer.family, outer.prefix)) === outer.base
  );
}

/** True when inner lies in outer and is strictly smaller (the ipBlock.except rule). */
export function isStrictSubset(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix > outer.prefix && cidrContains(outer, inner);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.prefix <= b.prefix ? cidrContains(a, b) : cidrContains(b, a);
}

/** All addresses of the prefix, network and broadcast included. */
export function cidrRange(c: Cidr): AddrRange {
  return { family: c.family, first: c.base, last: c.base + (1n << BigInt(familyBits(c.family) - c.prefix)) - 1n };
}

export function rangeContains(r: AddrRange, a: IpAddr): boolean {
  return r.family === a.family && a.value >= r.first && a.value <= r.last;
}

/** The addresses of cidr without those of except, as sorted disjoint ranges. */
export function cidrMinus(cidr: Cidr, except: readonly Cidr[]): AddrRange[] {
  let ranges: AddrRange[] = [cidrRange(cidr)];
  const holes = except
    .filter((e) => e.family === cidr.family)
    .map(cidrRange)
    .sort((a, b) => (a.first < b.first ? -1 : 1));
  for (const h of holes) {
    const next: AddrRange[] = [];
    for (const r of ranges) {
      if (h.last < r.first || h.first > r.last) {
        next.push(r);
        continue;
      }
      if (h.first > r.first) next.push({ family: r.family, first: r.first, last: h.first - 1n });
      if (h.last < r.last) next.push({ family: r.family, first: h.last + 1n, last: r.last });
    }
    ranges = next;
  }
  return ranges;
}

// ---- carving a cluster CIDR into per-node subnets ----

/** How many /subnetPrefix subnets fit into the cluster CIDR; InvalidCidr when the size does not fit. */
export function subnetCount(cluster: Cidr, subnetPrefix: number): bigint {
  const bits = familyBits(cluster.family);
  if (!Number.isInteger(subnetPrefix) || subnetPrefix < cluster.prefix || subnetPrefix > bits) {
    throw new InvalidCidr(
      `node subnet size /${subnetPrefix} does not fit in ${formatCidr(cluster)}: it must be between /${cluster.prefix} and /${bits}`,
    );
  }
  return 1n << BigInt(subnetPrefix - cluster.prefix);
}

/** The index-th /subnetPrefix subnet of the cluster CIDR (0-based). */
export function nthSubnet(cluster: Cidr, subnetPrefix: number, index: bigint): Cidr {
  const n = subnetCount(cluster, subnetPrefix);
  if (index < 0n || index >= n) throw new RangeError(`subnet index ${index} is outside 0..${n - 1n}`);
  const step = 1n << BigInt(familyBits(cluster.family) - subnetPrefix);
  return { family: cluster.family, base: cluster.base + index * step, prefix: subnetPrefix };
}

/** The index of subnet in the cluster CIDR, or undefined if it is not one of its /subnetPrefix subnets. */
export function subnetIndex(cluster: Cidr, subnetPrefix: number, subnet: Cidr): bigint | undefined {
  if (subnet.prefix !== subnetPrefix || !cidrContains(cluster, subnet)) return undefined;
  return (subnet.base - cluster.base) >> BigInt(familyBits(cluster.family) - subnetPrefix);
}

/**
 * Picks a free /subnetPrefix subnet of cluster that is not in taken (canonical CIDR texts).
 * The search starts at a position derived from seed (e.g. the node name) so concurrent claimers
 * spread over the pool instead of all racing for the first subnet, and probes linearly from there:
 * at most taken.size + 1 probes, so it is cheap even for a huge IPv6 pool.
 */
export function pickFreeSubnet(
  cluster: Cidr,
  subnetPrefix: number,
  taken: ReadonlySet<string>,
  seed: string,
): Cidr | undefined {
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
