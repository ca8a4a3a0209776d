// Test topology in namespaces the test creates (never the machine's own): an underlay of one or
// two L2 subnets (bridges in an "underlay" namespace, joined by a router namespace when there are
// two), N "node" namespaces with a veth on it, and in each node a "pod" namespace wired by hand
// the way the agent wires pods (routed veth: /32 and /128 address, default route via a
// link-local gateway, host route on the node). Everything goes with destroy(), also on failure.
import { randomBytes } from "node:crypto";
import { run } from "../../kernel/exec.js";
import { canonicalIpOrThrow, type IpFamily as Family } from "../../net/ip.js";
import type { LocalNode } from "../types.js";

export interface TopoNode {
  readonly name: string;
  /** The node namespace's path, for BackendOptions.kernel.netns. */
  readonly netns: string;
  readonly subnet: number;
  readonly underlay: { readonly ipv4: string; readonly ipv6: string };
  readonly podCIDRs: { ipv4?: string; ipv6?: string };
  /** The test pod's namespace path and addresses. */
  readonly pod: { readonly netns: string; readonly ipv4?: string; readonly ipv6?: string };
  /** What the agent would hand to Backend.setup(). */
  readonly local: LocalNode;
}

export interface Topology {
  readonly nodes: TopoNode[];
  destroy(): Promise<void>;
}

export interface TopologySpec {
  /** Subnet index (0 or 1) of each node, e.g. [0, 0, 1]: three nodes, the third behind the router. */
  readonly subnets: readonly number[];
  readonly podFamilies: readonly Family[];
  readonly underlayMtu?: number;
}

const ipb = (ns: string, lines: string[]): Promise<string> =>
  run(["ip", "-n", ns, "-batch", "-"], { input: lines.join("\n") + "\n" });
const sysctl = (ns: string, ...kv: string[]): Promise<string> =>
  run(["sysctl", "-q", "-w", ...kv], { netns: `/run/netns/${ns}` });

export async function buildTopology(spec: TopologySpec): Promise<Topology> {
  const prefix = `wt-${randomBytes(3).toString("hex")}`;
  const made: string[] = [];
  const destroy = async (): Promise<void> => {
    for (const ns of made.reverse()) await run(["ip", "netns", "del", ns]).catch(() => "");
    made.length = 0;
  };
  const addNs = async (suffix: string): Promise<string> => {
    const ns = `${prefix}-${suffix}`;
    await run(["ip", "netns", "add", ns]);
    made.push(ns);
    await ipb(ns, ["link set lo up"]);
    return ns;
  };
  const mtu = spec.underlayMtu ?? 1500;
  const subnetCount = Math.max(...spec.subnets) + 1;
  try {
    const u = await addNs("u");
    await sysctl(u, "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0").catch(() => "");
    for (let s = 0; s < subnetCount; s++)
      await ipb(u, [`link add br${s} mtu ${mtu} type bridge`, `link set br${s} up`]);
    if (subnetCount > 1) {
      // A router with one leg per subnet: nodes on different subnets reach each other only through it.
      const r = await addNs("r");
      await sysctl(r, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
      for (let s = 0; s < subnetCount; s++) {
        await ipb(u, [
          `link add r${s} mtu ${mtu} type veth peer name eth${s} netns ${r}`,
          `link set r${s} master br${s}`,
          `link set r${s} up`,
        ]);
        await ipb(r, [
          `addr add 10.${200 + s}.0.254/24 dev eth${s}`,
          `addr add fd00:${200 + s}::fe/64 dev eth${s} nodad`,
          `link set eth${s} mtu ${mtu} up`,
        ]);
      }
    }
    const nodes: TopoNode[] = [];
    for (let i = 0; i < spec.subnets.length; i++) {
      const s = spec.subnets[i];
      const name = `node${i}`;
      const n = await addNs(`n${i}`);
      const p = await addNs(`p${i}`);
      await sysctl(n, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
      const ul4 = `10.${200 + s}.0.${i + 1}`;
      const ul6 = `fd00:${200 + s}::${i + 1}`;
      await ipb(u, [
        `link add v${i} mtu ${mtu} type veth peer name eth0 netns ${n}`,
        `link set v${i} master br${s}`,
        `link set v${i} up`,
      ]);
      const nodeLines = [`addr add ${ul4}/24 dev eth0`, `addr add ${ul6}/64 dev eth0 nodad`, `link set eth0 up`];
      if (subnetCount > 1)
        nodeLines.push(`route add default via 10.${200 + s}.0.254`, `route add default via fd00:${200 + s}::fe`);
      await ipb(n, nodeLines);

      const podCIDRs: { ipv4?: string; ipv6?: string } = {};
      const pod: { netns: string; ipv4?: string; ipv6?: string } = { netns: `/run/netns/${p}` };
      const hostLines = [`link add vp0 type veth peer name eth0 netns ${p}`, `link set vp0 up`];
      const podLines = [`link set eth0 up`];
      if (spec.podFamilies.includes(4)) {
        podCIDRs.ipv4 = `10.244.${i + 1}.0/24`;
        pod.ipv4 = `10.244.${i + 1}.10`;
        hostLines.push(`addr add 169.254.1.1/32 dev vp0`, `route add ${pod.ipv4}/32 dev vp0`);
        podLines.push(
          `addr add ${pod.ipv4}/32 dev eth0`,
          `route add 169.254.1.1 dev eth0 scope link`,
          `route add default via 169.254.1.1 dev eth0`,
        );
      }
      if (spec.podFamilies.includes(6)) {
        podCIDRs.ipv6 = `fd00:244:${i + 1}::/64`;
        pod.ipv6 = canonicalIpOrThrow(`fd00:244:${i + 1}::10`);
        hostLines.push(`addr add fe80::1/64 dev vp0 nodad`, `route add ${pod.ipv6}/128 dev vp0`);
        podLines.push(`addr add ${pod.ipv6}/128 dev eth0 nodad`, `route add default via fe80::1 dev eth0`);
      }
      await ipb(n, hostLines);
      await ipb(p, podLines);
      const underlay = { ipv4: ul4, ipv6: canonicalIpOrThrow(ul6) };
      nodes.push({
        name,
        netns: `/run/netns/${n}`,
        subnet: s,
        underlay,
        podCIDRs,
        pod,
        local: { name, underlay, podCIDRs },
      });
    }
    return { nodes, destroy };
  } catch (e) {
    await destroy();
    throw e;
  }
}

/** One ping from a pod namespace; true when a reply came back. */
export async function ping(fromPodNetns: string, to: string, timeoutS = 2): Promise<boolean> {
  // run() rather than runStatus(): runStatus writes stdin after a fast exit and dies of EPIPE.
  try {
    await run(["busybox", "ping", to.includes(":") ? "-6" : "-4", "-c", "1", "-W", String(timeoutS), to], {
      netns: fromPodNetns,
    });
    return true;
  } catch {
    return false;
  }
}

/** Reachability with a few tries (the first packets may wait on neighbour resolution). */
export async function reaches(fromPodNetns: string, to: string): Promise<boolean> {
  for (let i = 0; i < 3; i++) if (await ping(fromPodNetns, to)) return true;
  return false;
}

/**
 * The node namespace's network state that a backend may touch, normalized for comparison:
 * links, global addresses, main-table routes, permanent neighbours, FDB entries.
 */
export async function snapshot(netns: string): Promise<string> {
  const j = async (argv: string[]): Promise<unknown[]> => {
    const out = (await run(argv, { netns })).trim();
    return out ? (JSON.parse(out) as unknown[]) : [];
  };
  type Link = {
    ifname: string;
    mtu: number;
    address: string;
    flags: string[];
    linkinfo?: { info_kind?: string; info_data?: unknown };
  };
  type Addr = { ifname: string; addr_info?: { local: string; prefixlen: number; scope: string }[] };
  const links = ((await j(["ip", "-j", "-d", "link", "show"])) as Link[])
    .map((l) => ({
      name: l.ifname,
      mtu: l.mtu,
      mac: l.address,
      up: l.flags.includes("UP"),
      kind: l.linkinfo?.info_kind ?? null,
      data: l.linkinfo?.info_data ?? null,
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const addrs = ((await j(["ip", "-j", "addr", "show"])) as Addr[])
    .flatMap((l) =>
      (l.addr_info ?? []).filter((a) => a.scope === "global").map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`),
    )
    .sort();
  const routes = [
    ...(await j(["ip", "-j", "-4", "route", "show", "table", "main"])),
    ...(await j(["ip", "-j", "-6", "route", "show", "table", "main"])),
  ]
    .map((r) => JSON.stringify(r))
    .sort();
  const neigh = (await j(["ip", "-j", "neigh", "show", "nud", "permanent"])).map((n) => JSON.stringify(n)).sort();
  const fdb = (await j(["bridge", "-j", "fdb", "show"]))
    .filter((e) => (e as { dst?: string }).dst !== undefined)
    .map((e) => JSON.stringify(e))
    .sort();
  return JSON.stringify({ links, addrs, routes, neigh, fdb }, null, 1);
}
