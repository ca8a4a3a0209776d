// IP addresses: the one parser and the one writer for the whole tree. An address is a family and
// a number (bigint, so IPv4 and IPv6 share every piece of arithmetic). The parser returns null on
// anything that is not an address; callers that must throw wrap it with their own typed error
// (ipOrThrow), so there is one set of rules for what an address is, whatever the error contract.
import { isIPv4, isIPv6 } from "node:net";

export type IpFamily = 4 | 6;

export interface IpAddr {
  readonly family: IpFamily;
  readonly value: bigint;
}

/** Width of an address of the family, in bits. */
export const familyBits = (family: IpFamily): 32 | 128 => (family === 4 ? 32 : 128);

/** The default error of the throwing wrappers below; layers with their own error types pass a factory. */
export class InvalidAddress extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidAddress";
  }
}

export type ErrorFactory = (message: string) => Error;

function v4Value(text: string): bigint {
  return text.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

/**
 * The one address parser: a dotted quad (no leading zeros, so "010.1.2.3" is refused rather than
 * read as octal or decimal) or IPv6, with an embedded dotted IPv4 tail allowed (::ffff:1.2.3.4).
 * Zone ids ("fe80::1%eth0") are refused: every address weft handles is routed, never scoped to a
 * link, and a '%' must never reach an `ip -batch` line. Null when the text is not an address.
 */
export function parseIp(text: string): IpAddr | null {
  if (typeof text !== "string") return null;
  if (isIPv4(text)) return { family: 4, value: v4Value(text) };
  // node's isIPv6 accepts a zone id; the rest of its grammar (group count, hex digits, one "::") is what we want.
  if (!isIPv6(text) || text.includes("%")) return null;
  let s = text.toLowerCase();
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (tail) {
    const v = v4Value(tail[1]);
    s = `${s.slice(0, tail.index)}${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head, rest] = s.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const r = rest ? rest.split(":") : [];
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill("0"), ...r];
  return { family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
}

/** parseIp for callers whose contract is to throw: the error is theirs (default InvalidAddress). */
export function ipOrThrow(text: string, toError: ErrorFactory = (m) => new InvalidAddress(m)): IpAddr {
  const a = parseIp(text);
  if (!a) throw toError(`"${String(text)}" is not an IP address`);
  return a;
}

/** 4 or 6 for an address, null for anything else. */
export function ipFamily(text: string): IpFamily | null {
  return parseIp(text)?.family ?? null;
}

export interface FormatOptions {
  /**
   * Write IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d, not :: or ::1) addresses
   * with a dotted tail, as inet_ntop and so `ip` print them. Off by default: the canonical form
   * weft stores and compares is the all-hex one.
   */
  dottedV4Tail?: boolean;
}

/**
 * The one address writer: a dotted quad, or RFC 5952 IPv6 (lower case, no leading zeros, the
 * longest run of two or more zero groups as "::", the first one on a tie), as iproute2 and
 * Kubernetes print it.
 */
export function formatIp(family: IpFamily, value: bigint, opts: FormatOptions = {}): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => ((value >> s) & 0xffn).toString()).join(".");
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  if (
    opts.dottedV4Tail &&
    groups.slice(0, 5).every((g) => g === 0) &&
    (groups[5] === 0xffff || (groups[5] === 0 && (groups[6] !== 0 || groups[7] > 1)))
  ) {
    return `::${groups[5] ? "ffff:" : ""}${formatIp(4, value & 0xffffffffn)}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** The canonical text of an address (so "fd00:0::1" and "FD00::1" compare equal), or null. */
export function canonicalIp(text: string): string | null {
  const a = parseIp(text);
  return a ? formatIp(a.family, a.value) : null;
}

/** canonicalIp for callers whose contract is to throw (desired state that was validated upstream). */
export function canonicalIpOrThrow(text: string, toError?: ErrorFactory): string {
  const a = ipOrThrow(text, toError);
  return formatIp(a.family, a.value);
}

/** The address in network byte order: 4 or 16 bytes (what netlink carries). */
export function ipToBytes(a: IpAddr): Buffer {
  const n = familyBits(a.family) / 8;
  return Buffer.from(a.value.toString(16).padStart(n * 2, "0"), "hex");
}

/** An address from 4 or 16 bytes in network byte order; null for any other length. */
export function ipFromBytes(b: Buffer): IpAddr | null {
  if (b.length !== 4 && b.length !== 16) return null;
  return { family: b.length === 4 ? 4 : 6, value: BigInt(`0x${b.toString("hex")}`) };
}
