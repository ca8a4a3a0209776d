// Validation of every name and address before it reaches the kernel. Each function returns the
// value unchanged or throws InvalidKernelInput naming what was wrong.
import { isIP } from "node:net";
import { isAbsolute, normalize } from "node:path";

export class InvalidKernelInput extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidKernelInput";
  }
}

/**
 * Linux interface names: 1-15 bytes, no '/', whitespace or ':', not "." or "..". No '%' either:
 * the kernel takes a name with '%' as a template ("eth%d" becomes eth0), so the link would not
 * carry the name asked for.
 */
export function ifname(name: string): string {
  if (typeof name !== "string" || name.length === 0) throw new InvalidKernelInput("interface name is empty");
  if (Buffer.byteLength(name) > 15) throw new InvalidKernelInput(`interface name "${name}" is longer than 15 bytes`);
  if (name === "." || name === "..") throw new InvalidKernelInput(`interface name "${name}" is not allowed`);
  if (/[\/\s:\0]/.test(name)) throw new InvalidKernelInput(`interface name "${name}" contains '/', ':' or whitespace`);
  if (name.includes("%")) throw new InvalidKernelInput(`interface name "${name}" contains '%' (the kernel would take it as a name template)`);
  return name;
}

/** A plain IPv4 or IPv6 address (no prefix). */
export function ip(addr: string): string {
  if (isIP(addr) === 0) throw new InvalidKernelInput(`"${addr}" is not an IP address`);
  return addr;
}

/** ADDRESS/PREFIX with a prefix length valid for the family. */
export function cidr(value: string): string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(value);
  if (!m) throw new InvalidKernelInput(`"${value}" is not in CIDR notation (address/prefix)`);
  const fam = isIP(m[1]);
  const len = Number(m[2]);
  if (fam === 0) throw new InvalidKernelInput(`"${value}": "${m[1]}" is not an IP address`);
  if (len > (fam === 4 ? 32 : 128)) throw new InvalidKernelInput(`"${value}": prefix length ${len} is too long`);
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
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new InvalidKernelInput(`"${name}" is not a valid namespace name`);
  return name;
}
