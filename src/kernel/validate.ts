// Validation of every name and address before it reaches the kernel. Each function returns the
// value unchanged or throws InvalidKernelInput naming what was wrong.
import { isAbsolute, normalize } from "node:path";
import { cidrOrThrow } from "../net/cidr.js";
import { ifnameProblem } from "../net/ifname.js";
import { ipOrThrow } from "../net/ip.js";

export class InvalidKernelInput extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidKernelInput";
  }
}

/** Linux interface names (net/ifname.ts): also refuses what `ip -batch` would read as syntax. */
export function ifname(name: string): string {
  const problem = ifnameProblem(name);
  if (problem) throw new InvalidKernelInput(`interface name "${String(name)}" ${problem}`);
  return name;
}

/** A plain IPv4 or IPv6 address (no prefix, no zone id). */
export function ip(addr: string): string {
  ipOrThrow(addr, (m) => new InvalidKernelInput(m));
  return addr;
}

/** ADDRESS/PREFIX with a prefix length valid for the family (host bits allowed: 10.0.0.2/24). */
export function cidr(value: string): string {
  cidrOrThrow(value, { hostBits: "clear" }, (m) => new InvalidKernelInput(m));
  return value;
}

/** An absolute, normalized filesystem path to a network namespace. */
export function netnsPath(p: string): string {
  if (typeof p !== "string" || !isAbsolute(p) || normalize(p) !== p || p.includes("\0")) {
    throw new InvalidKernelInput(`"${p}" is not an absolute, normalized network namespace path`);
  }
  // The path goes into `ip -batch` lines, where whitespace and quotes would split or join words.
  if (/[\s"'\\]/.test(p) || p.length > 4096) {
    throw new InvalidKernelInput(`network namespace path "${p}" contains whitespace, quotes or backslashes`);
  }
  return p;
}

/** A MAC address, aa:bb:cc:dd:ee:ff. */
export function mac(value: string): string {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(value)) throw new InvalidKernelInput(`"${value}" is not a MAC address`);
  return value.toLowerCase();
}

/** Named network namespaces (ip netns): a conservative character set. */
export function netnsName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name))
    throw new InvalidKernelInput(`"${name}" is not a valid namespace name`);
  return name;
}
