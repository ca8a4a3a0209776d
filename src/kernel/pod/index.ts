// The pod kernel axis: one interface (types.ts), one folder per implementation, one case suite
// (cases.ts) that both pass. The agent picks an implementation by name once, at its entry point
// (`weft agent --kernel`), and passes the object down; nothing below reads the environment.
import { IprouteKernel } from "./iproute/kernel.js";
import { NetlinkKernel } from "./netlink/kernel.js";
import type { PodKernel } from "./types.js";

export type * from "./types.js";
export { GATEWAY_V4, GATEWAY_V6 } from "./types.js";

/** netlink: rtnetlink from the agent itself (about 2 ms per ADD); iproute: `ip -batch` child processes (about 9 ms). */
export const POD_KERNELS = ["netlink", "iproute"] as const;
export type PodKernelName = (typeof POD_KERNELS)[number];

export function isPodKernelName(s: string): s is PodKernelName {
  return (POD_KERNELS as readonly string[]).includes(s);
}

export function createPodKernel(name: PodKernelName): PodKernel {
  return name === "iproute" ? new IprouteKernel() : new NetlinkKernel();
}
