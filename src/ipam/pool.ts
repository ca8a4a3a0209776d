// Address pools: a CIDR the allocator hands addresses out of. Parsing and arithmetic are
// net/cidr.ts; what is IPAM's own is the strict reading (a typo must not become another pool) and
// which addresses of a pool are usable.
import { cidrOrThrow, formatCidr, type Cidr } from "../net/cidr.js";
import { familyBits } from "../net/ip.js";

export { InvalidCidr } from "../net/cidr.js";

export interface Pool extends Cidr {
  /** The CIDR as given, normalized: network address/prefix. */
  readonly cidr: string;
}

/** ADDRESS/PREFIX with no host bits set; throws InvalidCidr naming what is wrong. */
export function parsePool(text: string): Pool {
  const c = cidrOrThrow(text.trim());
  return { ...c, cidr: formatCidr(c) };
}

/** First and last address the allocator may hand out (skips network and, for IPv4, broadcast). */
export function usableRange(pool: Cidr): { first: bigint; last: bigint } {
  const size = 1n << BigInt(familyBits(pool.family) - pool.prefix);
  const top = pool.base + size - 1n;
  if (size <= 2n) return { first: pool.base, last: top }; // /31, /32, /127, /128: all usable
  // IPv6 has no broadcast, but the all-zero host is the subnet-router anycast address.
  return { first: pool.base + 1n, last: pool.family === 4 ? top - 1n : top };
}
