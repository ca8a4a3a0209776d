// Named network namespaces (`ip netns`, files under /run/netns): made, listed and removed here
// only. Callers pass names; every name is validated before it reaches a command.
import { existsSync } from "node:fs";
import { run } from "./exec.js";
import { netnsName } from "./validate.js";

/** The bind-mount file of a named namespace. */
export function netnsPathOf(name: string): string {
  return `/run/netns/${netnsName(name)}`;
}

export function netnsExists(name: string): boolean {
  return existsSync(netnsPathOf(name));
}

/** `ip netns add` plus loopback up; a namespace that already exists is kept as it is. */
export async function ensureNetns(name: string): Promise<boolean> {
  if (netnsExists(name)) return false;
  await run(["ip", "netns", "add", netnsName(name)]);
  await run(["ip", "link", "set", "lo", "up"], { netns: netnsPathOf(name) });
  return true;
}

export async function deleteNetns(name: string): Promise<void> {
  if (!netnsExists(name)) return;
  await run(["ip", "netns", "del", netnsName(name)]);
}

export async function listNetns(): Promise<string[]> {
  const out = (await run(["ip", "-j", "netns", "list"])).trim();
  if (!out) return [];
  return (JSON.parse(out) as Array<{ name: string }>).map((n) => n.name);
}
