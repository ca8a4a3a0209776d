// Netlink failures as typed errors. NetlinkError extends KernelCommandError so code written for
// the iproute2 kernel (the agent's failure mapping, its "File exists" check) handles both alike:
// `stderr` carries the person-readable text, including the C library's wording of the errno.
import { constants } from "node:os";
import { KernelCommandError } from "../exec.js";
import { libc } from "./libc.js";

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

/** "EEXIST" for 17, and so on. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

export function errnoText(errno: number): string {
  try {
    return libc().strerror(errno);
  } catch {
    return errnoName(errno);
  }
}

export class NetlinkError extends KernelCommandError {
  /** Symbolic errno, e.g. "EEXIST". */
  readonly code: string;
  constructor(
    /** What was being done, e.g. "create veth wf0123/eth0". */
    readonly operation: string,
    /** Positive errno from the kernel or libc. */
    readonly errno: number,
    /** What a person should know, e.g. "interface eth0 already exists in /run/netns/x". */
    detail?: string,
    /** The kernel's extended-ack text, when it gave one. */
    readonly kernelMessage?: string,
  ) {
    const why = `${errnoText(errno)} (${errnoName(errno)})${kernelMessage ? `: ${kernelMessage}` : ""}`;
    const text = detail ? `${detail}: ${why}` : `${operation}: ${why}`;
    super(["netlink", operation], null, text);
    this.name = "NetlinkError";
    this.code = errnoName(errno);
    this.message = text;
  }
}
