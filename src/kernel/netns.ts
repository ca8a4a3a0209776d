// Named network namespaces (`ip netns`, files under /run/netns): made, listed and removed here
// only. Callers pass names; every name is validated before it reaches a command. A name whose
// file is a bind mount of the machine's own namespace is never configured or deleted.
import { existsSync } from "node:fs";
import { run } from "./exec.js";
import { assertNotHostNetns } from "./nsfile.js";
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
  if (netnsExists(name)) {
    // Kept as it is, and then configured by the caller: never when it is the host's.
    assertNotHostNetns(netnsPathOf(name), `use network namespace "${name}"`);
    return false;
  }
  await run(["ip", "netns", "add", netnsName(name)]);
  await run(["ip", "link", "set", "lo", "up"], { netns: netnsPathOf(name) });
  return true;
}

export async function deleteNetns(name: string): Promise<void> {
  if (!netnsExists(name)) return;
  assertNotHostNetns(netnsPathOf(name), `delete network namespace "${name}"`);
  await run(["ip", "netns", "del", netnsName(name)]);
}

export async function listNetns(): Promise<string[]> {
  const out = (await run(["ip", "-j", "netns", "list"])).trim();
  if (!out) return [];
  return (JSON.parse(out) as Array<{ name: string }>).map((n) => n.name);
}
