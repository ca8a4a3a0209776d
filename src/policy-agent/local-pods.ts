// The controller's view of the pods wired on this node: validated entries, matching a CNI DEL's
// reference to them, and the kernel's grouping of host veths by their peers' network namespace
// (the interfaces of one pod).
import { canonicalIp } from "../net/ip.js";
import { ifname as checkIfname } from "../kernel/validate.js";
import type { LocalPod } from "../policy/index.js";

/** Host veths (names starting with `prefix`) grouped by their peers' netns id; only groups of two or more. */
export function groupByNetns(links: Array<{ ifname: string; netnsid: number }>, prefix: string): string[][] {
  const by = new Map<number, string[]>();
  for (const l of links) if (l.ifname.startsWith(prefix)) by.set(l.netnsid, [...(by.get(l.netnsid) ?? []), l.ifname]);
  return [...by.values()]
    .filter((g) => g.length > 1)
    .map((g) => g.sort())
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/** Whether a pod's interface is the one (or one of those) a podRemoved() reference names. */
export function matchesRef(p: LocalPod, ref: { namespace: string; name: string; ifname?: string }): boolean {
  return p.namespace === ref.namespace && p.name === ref.name && (ref.ifname === undefined || p.ifname === ref.ifname);
}

/** A LocalPod with a valid interface name and canonical addresses (CNI's "addr/prefix" stripped). */
export function checkLocalPod(p: LocalPod): LocalPod {
  checkIfname(p.ifname);
  const ips = p.ips.map((ip) => {
    // CNI results give "addr/prefix"; the datapath wants the address.
    const c = canonicalIp(ip.replace(/\/\d{1,3}$/, ""));
    if (c === null) throw new Error(`pod ${p.namespace}/${p.name}: "${ip}" is not an IP address`);
    return c;
  });
  return {
    namespace: p.namespace,
    name: p.name,
    ifname: p.ifname,
    ips,
    ...(p.netns !== undefined ? { netns: p.netns } : {}),
  };
}
