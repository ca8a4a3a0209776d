// Small, exact IP arithmetic for the backends: parse, canonical text (RFC 5952 for IPv6, the
// form iproute2 prints, so kernel state and desired state compare as strings), containment.
import { isIP } from "node:net";
import { formatIpValue } from "../../net/ip.js";

export type Family = 4 | 6;

export interface IpNet {
  readonly family: Family;
  /** The network address (host bits cleared). */
  readonly base: bigint;
  readonly prefix: number;
}

const bits = (f: Family): number => (f === 4 ? 32 : 128);

export function familyOf(addr: string): Family | null {
  const f = isIP(addr);
  return f === 4 ? 4 : f === 6 ? 6 : null;
}

/** Parses a plain address; throws on anything isIP() rejects. */
export function parseAddr(addr: string): { family: Family; value: bigint } {
  const family = familyOf(addr);
  if (family === null) throw new Error(`"${addr}" is not an IP address`);
  if (family === 4) {
    return { family, value: addr.split(".").reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n) };
  }
  let text = addr.toLowerCase().replace(/%.*$/, "");
  // An embedded dotted IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const v = parseAddr(v4[1]).value;
    text = text.slice(0, -v4[1].length) + `${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, null];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return { family, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
}

export function formatAddr(family: Family, value: bigint): string {
  return formatIpValue(family, value);
}

/** The canonical text of an address (throws if it is not one). */
export function canonicalAddr(addr: string): string {
  const { family, value } = parseAddr(addr);
  return formatAddr(family, value);
}

const mask = (f: Family, prefix: number): bigint => {
  const all = (1n << BigInt(bits(f))) - 1n;
  return all ^ ((1n << BigInt(bits(f) - prefix)) - 1n);
};

/** Parses ADDRESS/PREFIX (a bare address is a host prefix); host bits are cleared. */
export function parseCidr(text: string): IpNet {
  const [addr, len, extra] = text.split("/");
  if (extra !== undefined) throw new Error(`"${text}" is not in CIDR notation`);
  const { family, value } = parseAddr(addr);
  const prefix = len === undefined ? bits(family) : Number(len);
  if (!/^\d{1,3}$/.test(len ?? "0") || prefix > bits(family)) throw new Error(`"${text}": bad prefix length`);
  return { family, base: value & mask(family, prefix), prefix };
}

export function formatCidr(n: IpNet): string {
  return `${formatAddr(n.family, n.base)}/${n.prefix}`;
}

/** Canonical ADDRESS/PREFIX text with host bits cleared ("10.244.2.0/24", "fd00:244:2::/64"). */
export function canonicalCidr(text: string): string {
  return formatCidr(parseCidr(text));
}

export function contains(net: IpNet, addr: string): boolean {
  const a = parseAddr(addr);
  return a.family === net.family && (a.value & mask(net.family, net.prefix)) === net.base;
}

export function overlaps(a: IpNet, b: IpNet): boolean {
  if (a.family !== b.family) return false;
  const p = Math.min(a.prefix, b.prefix);
  return (a.base & mask(a.family, p)) === (b.base & mask(b.family, p));
}

/** The first address of a network: flannel's VTEP address convention (x.x.x.0, prefix::). */
export function firstAddress(net: IpNet): string {
  return formatAddr(net.family, net.base);
}
