// IPv4/IPv6 addresses as bigints: parsing, canonical text, CIDR containment and CIDR-minus-except
// ranges. Used by NetworkPolicy validation (ipBlock rules) and by the policy compiler (nft sets).
import { isIPv4, isIPv6 } from "node:net";
import { formatIpValue } from "../net/ip.js";

export type Family = 4 | 6;

export interface ParsedCidr {
  family: Family;
  /** Network address (host bits cleared). */
  network: bigint;
  prefix: number;
}

export interface AddrRange {
  family: Family;
  first: bigint;
  last: bigint;
}

const bits = (f: Family): number => (f === 4 ? 32 : 128);

function parseV4(s: string): bigint {
  return s.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function parseV6(s: string): bigint {
  let text = s;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4tail) {
    const v = parseV4(v4tail[1]);
    text = text.slice(0, -v4tail[1].length) + `${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** The address as a bigint, or null when it is not an IP address. */
export function parseAddr(s: string): { family: Family; value: bigint } | null {
  if (isIPv4(s)) return { family: 4, value: parseV4(s) };
  if (isIPv6(s) && !s.includes("%")) return { family: 6, value: parseV6(s) };
  return null;
}

export function formatAddr(family: Family, v: bigint): string {
  return formatIpValue(family, v);
}

/** Canonical text of an address (so "fd00:0::1" and "fd00::1" compare equal), or null. */
export function canonicalAddr(s: string): string | null {
  const p = parseAddr(s);
  return p ? formatAddr(p.family, p.value) : null;
}

/** Parses ADDRESS/PREFIX like Go's net.ParseCIDR (host bits are allowed and cleared). */
export function parseCidr(s: string): ParsedCidr | null {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return null;
  const a = parseAddr(m[1]);
  if (!a) return null;
  const prefix = Number(m[2]);
  if (prefix > bits(a.family) || String(prefix) !== m[2].replace(/^0+(?=\d)/, "")) return null;
  return { family: a.family, network: a.value & mask(a.family, prefix), prefix };
}

function mask(f: Family, prefix: number): bigint {
  const b = BigInt(bits(f));
  const all = (1n << b) - 1n;
  return prefix === 0 ? 0n : (all >> BigInt(bits(f) - prefix)) << BigInt(bits(f) - prefix) & all;
}

export function cidrRange(c: ParsedCidr): AddrRange {
  const hostBits = BigInt(bits(c.family) - c.prefix);
  return { family: c.family, first: c.network, last: c.network + (1n << hostBits) - 1n };
}

export function cidrContains(c: ParsedCidr, family: Family, addr: bigint): boolean {
  return c.family === family && (addr & mask(family, c.prefix)) === c.network;
}

/** True when `inner` lies inside `outer` and is strictly smaller (the ipBlock.except rule). */
export function isStrictSubset(outer: ParsedCidr, inner: ParsedCidr): boolean {
  return outer.family === inner.family && inner.prefix > outer.prefix && cidrContains(outer, inner.family, inner.network);
}

/** The addresses of `cidr` without those of `except`, as sorted disjoint ranges. */
export function cidrMinus(cidr: ParsedCidr, except: readonly ParsedCidr[]): AddrRange[] {
  let ranges: AddrRange[] = [cidrRange(cidr)];
  const holes = except.filter((e) => e.family === cidr.family).map(cidrRange).sort((a, b) => (a.first < b.first ? -1 : 1));
  for (const h of holes) {
    const next: AddrRange[] = [];
    for (const r of ranges) {
      if (h.last < r.first || h.first > r.last) { next.push(r); continue; }
      if (h.first > r.first) next.push({ family: r.family, first: r.first, last: h.first - 1n });
      if (h.last < r.last) next.push({ family: r.family, first: h.last + 1n, last: r.last });
    }
    ranges = next;
  }
  return ranges;
}

export function rangeContains(r: AddrRange, family: Family, addr: bigint): boolean {
  return r.family === family && addr >= r.first && addr <= r.last;
}
