// IP addresses as bigints, and CIDR pools: the arithmetic the allocator needs, with canonical
// text forms so the same address is always stored and compared as the same string.
import { isIP } from "node:net";
import { formatIpValue } from "../net/ip.js";

export type Family = 4 | 6;

export class InvalidCidr extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidCidr";
  }
}

export function parseIp(text: string): { family: Family; value: bigint } {
  const fam = isIP(text);
  if (fam === 4) {
    const v = text.split(".").reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
    return { family: 4, value: v };
  }
  if (fam === 6) return { family: 6, value: parseIpv6(text) };
  throw new InvalidCidr(`"${text}" is not an IP address`);
}

function parseIpv6(text: string): bigint {
  let s = text.split("%")[0];
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (m) {
    const v4 = parseIp(m[2]).value;
    s = `${m[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function formatIp(family: Family, value: bigint): string {
  return formatIpValue(family, value);
}

/** The canonical text form of an address (lower case, compressed IPv6). */
export function canonicalIp(text: string): string {
  const { family, value } = parseIp(text);
  return formatIp(family, value);
}

export interface Pool {
  /** The CIDR as given, normalized: network address/prefix. */
  cidr: string;
  family: Family;
  network: bigint;
  prefix: number;
  bits: number;
}

export function parsePool(cidr: string): Pool {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr.trim());
  if (!m) throw new InvalidCidr(`"${cidr}" is not a CIDR (address/prefix)`);
  const { family, value } = parseIp(m[1]);
  const bits = family === 4 ? 32 : 128;
  const prefix = Number(m[2]);
  if (prefix > bits) throw new InvalidCidr(`"${cidr}": prefix /${prefix} is too long for IPv${family}`);
  const hostBits = BigInt(bits - prefix);
  const network = (value >> hostBits) << hostBits;
  if (network !== value) {
    throw new InvalidCidr(`"${cidr}" has host bits set; the network is ${formatIp(family, network)}/${prefix}`);
  }
  return { cidr: `${formatIp(family, network)}/${prefix}`, family, network, prefix, bits };
}

export function poolContains(pool: Pool, family: Family, value: bigint): boolean {
  if (family !== pool.family) return false;
  const hostBits = BigInt(pool.bits - pool.prefix);
  return value >> hostBits === pool.network >> hostBits;
}

/** First and last address the allocator may hand out (skips network and, for IPv4, broadcast). */
export function usableRange(pool: Pool): { first: bigint; last: bigint } {
  const size = 1n << BigInt(pool.bits - pool.prefix);
  const top = pool.network + size - 1n;
  if (size <= 2n) return { first: pool.network, last: top }; // /31, /32, /127, /128: all usable
  // IPv6 has no broadcast, but the all-zero host is the subnet-router anycast address.
  return { first: pool.network + 1n, last: pool.family === 4 ? top - 1n : top };
}
