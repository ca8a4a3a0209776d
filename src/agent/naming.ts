// Names and MACs the agent makes up for a pod's veth pair.
import { createHash, randomBytes } from "node:crypto";

/** Host veth names: "wf" + 11 hex digits, so they are recognizable and fit in 15 bytes. */
export const HOST_IF_PATTERN = /^wf[0-9a-f]{11}$/;

/** Deterministic host veth name for (containerId, ifname): a retry or DEL finds the same link. */
export function hostIfName(containerId: string, ifname: string): string {
  return "wf" + createHash("sha256").update(`${containerId}\0${ifname}`).digest("hex").slice(0, 11);
}

/** A random unicast, locally administered MAC. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0] & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}
