// Racks for the bgp backend (`weft lab up --racks R`): each rack's nodes share an L2 segment (a
// bridge inside the rack's top-of-rack namespace) with that rack's ToR, an FRR router; the ToRs
// and an "external" namespace (the data-centre fabric / the internet, lab addresses only) share a
// fabric segment (the bridge in the lab's underlay namespace). The external namespace runs FRR
// too, as the fabric's router: it learns every pod CIDR from the ToRs, so it reaches every pod
// without an overlay. Nothing here touches the machine's own namespace.
//
// Addresses: rack r is 10.250.r.0/24 (fd00:250:r::/64), its ToR .1, node nI .(10+I); the fabric
// is 10.249.0.0/24 (fd00:249::/64), external .1, ToR r .(10+r).
// AS numbers: the nodes use the cluster AS (64512 unless the BGPConfiguration says otherwise).
//   ebgp mode: ToR r is AS 65000+r, eBGP to its rack's nodes; it sends them nothing (their default
//     route is the ToR; routes from another rack would carry their own AS and be refused anyway).
//   rr mode: ToR r is in the cluster AS, a route reflector with its rack's nodes as iBGP clients
//     (rack-local routes reflected with the nodes' own next hops, others with the ToR's).
//   The external router is AS 65000, eBGP to every ToR.
// Node sessions are dynamic on the ToR (`bgp listen range` over the rack subnet): the ToR needs
// no list of nodes, as a real ToR configured for a rack. BFD (bfdd) and graceful restart are on
// toward the nodes.
import { join } from "node:path";
import { enableForwarding, ensureBridge, plugIntoBridge } from "../kernel/bridge.js";
import { ensureNetns } from "../kernel/netns.js";
import { frrPaths, startFrr, stopFrr, writeFrrConfig, type FrrConfig, type FrrPaths } from "../kernel/frr.js";
import { ip } from "../kernel/validate.js";
import { UNDERLAY_BRIDGE } from "./topology.js";

export type TorMode = "ebgp" | "rr";
export const TOR_MODES: readonly TorMode[] = ["ebgp", "rr"];
export const EXTERNAL_AS = 65000;
export const CLUSTER_AS_DEFAULT = 64512;
/** BFD toward the nodes: 100 ms x 3 = 300 ms detection (the BGPConfiguration's defaults). */
export const TOR_BFD = { intervalMs: 100, multiplier: 3 } as const;
export const TOR_RESTART_SECONDS = 120;
/** The rack bridge inside a ToR namespace and the ToR's link to the fabric. */
export const RACK_BRIDGE = "br0";
export const TOR_FABRIC_LINK = "fabric0";
export const EXTERNAL_LINK = "eth0";

export const torAs = (rack: number, mode: TorMode, clusterAs = CLUSTER_AS_DEFAULT): number =>
  mode === "rr" ? clusterAs : EXTERNAL_AS + rack;

export const rackV4 = (rack: number, host: number): string => `10.250.${rack}.${host}`;
export const rackV6 = (rack: number, host: number): string => `fd00:250:${rack}::${host}`;
export const rackSubnetV4 = (rack: number): string => `10.250.${rack}.0/24`;
export const rackSubnetV6 = (rack: number): string => `fd00:250:${rack}::/64`;
export const fabricV4 = (host: number): string => `10.249.0.${host}`;
export const fabricV6 = (host: number): string => `fd00:249::${host}`;
export const EXTERNAL_V4 = fabricV4(1);
export const EXTERNAL_V6 = fabricV6(1);
/** A host of the external namespace's own, the source the fabric's probes come from. */
export const torFabricHost = (rack: number): number => 10 + rack;
export const nodeHost = (i: number): number => 10 + i;

/** Which rack node i (1-based) of n sits in: contiguous blocks, as even as they come. */
export function rackOf(i: number, nodes: number, racks: number): number {
  const per = Math.ceil(nodes / racks);
  return Math.floor((i - 1) / per) + 1;
}

export interface RackRouter {
  rack: number;
  netns: string;
  as: number;
  ipv4: string;
  ipv6?: string;
  fabric4: string;
  fabric6?: string;
  frrDir: string;
}

export interface ExternalRouter {
  netns: string;
  as: number;
  ipv4: string;
  ipv6?: string;
  frrDir: string;
}

/** The FRR config of a ToR (pure: the same rack gives the same text). */
export function torConfig(t: RackRouter, mode: TorMode, clusterCidrs: readonly string[]): FrrConfig {
  const v6 = t.ipv6 !== undefined && t.fabric6 !== undefined;
  const b: string[] = [];
  const l = (s: string) => b.push(s);
  l("frr defaults datacenter");
  l(`hostname tor${t.rack}`);
  l("!");
  // Only pod subnets go down to the nodes (rr mode); nothing else of the fabric.
  clusterCidrs.forEach((c) => {
    const fam = c.includes(":") ? "ipv6" : "ip";
    l(`${fam} prefix-list PODS${fam === "ip" ? "4" : "6"} seq 10 permit ${c} le ${fam === "ip" ? 32 : 128}`);
  });
  l("ip prefix-list NONE4 seq 10 deny any");
  l("ipv6 prefix-list NONE6 seq 10 deny any");
  l("!");
  l(`router bgp ${t.as}`);
  l(` bgp router-id ${t.fabric4}`);
  l(" no bgp ebgp-requires-policy");
  l(" no bgp default ipv4-unicast");
  l(" bgp graceful-restart");
  l(` bgp graceful-restart restart-time ${TOR_RESTART_SECONDS}`);
  l(" bgp bestpath as-path multipath-relax");
  const nodeGroups: [string, string][] = [["NODES4", rackSubnetV4(t.rack)]];
  if (v6) nodeGroups.push(["NODES6", rackSubnetV6(t.rack)]);
  for (const [g, subnet] of nodeGroups) {
    l(` neighbor ${g} peer-group`);
    l(` neighbor ${g} remote-as ${mode === "rr" ? "internal" : "external"}`);
    l(` neighbor ${g} bfd profile weft`);
    l(` neighbor ${g} timers connect 1`);
    l(` bgp listen range ${subnet} peer-group ${g}`);
  }
  // One session per family to the external router, each carrying its own family.
  l(` neighbor ${EXTERNAL_V4} remote-as external`);
  if (v6) l(` neighbor ${EXTERNAL_V6} remote-as external`);
  for (const fam of v6 ? (["4", "6"] as const) : (["4"] as const)) {
    l(` address-family ipv${fam} unicast`);
    l(`  network ${fam === "4" ? rackSubnetV4(t.rack) : rackSubnetV6(t.rack)}`);
    l(`  neighbor NODES${fam} activate`);
    if (mode === "rr") {
      l(`  neighbor NODES${fam} route-reflector-client`);
      // Routes from the fabric reach the nodes through the ToR; reflected ones keep their node.
      l(`  neighbor NODES${fam} next-hop-self`);
      l(`  neighbor NODES${fam} prefix-list PODS${fam} out`);
    } else l(`  neighbor NODES${fam} prefix-list NONE${fam} out`);
    const ext = fam === "4" ? EXTERNAL_V4 : EXTERNAL_V6;
    l(`  neighbor ${ext} activate`);
    l(" exit-address-family");
  }
  l("exit");
  return {
    zebra: `hostname tor${t.rack}\n`,
    bgpd: b.join("\n") + "\n",
    bfdd: bfdConfig(),
    staticd: "",
  };
}

function bfdConfig(): string {
  return [
    "bfd",
    " profile weft",
    `  receive-interval ${TOR_BFD.intervalMs}`,
    `  transmit-interval ${TOR_BFD.intervalMs}`,
    `  detect-multiplier ${TOR_BFD.multiplier}`,
    " exit",
    "exit",
    "",
  ].join("\n");
}

/**
 * The external router's FRR config: eBGP to every ToR, nothing of its own to announce. In rr mode
 * every ToR (and every node) is in the cluster AS: the external router replaces that AS in the
 * paths it passes between racks (as-override), or the other rack's ToR and nodes would refuse
 * them as loops.
 */
export function externalConfig(e: ExternalRouter, tors: readonly RackRouter[], mode: TorMode = "ebgp"): FrrConfig {
  const v6 = e.ipv6 !== undefined;
  const b: string[] = [];
  const l = (s: string) => b.push(s);
  l("frr defaults datacenter");
  l("hostname external");
  l("!");
  l(`router bgp ${e.as}`);
  l(` bgp router-id ${e.ipv4}`);
  l(" no bgp ebgp-requires-policy");
  l(" no bgp default ipv4-unicast");
  l(" bgp graceful-restart");
  l(" bgp bestpath as-path multipath-relax");
  for (const t of tors) {
    l(` neighbor ${t.fabric4} remote-as ${t.as}`);
    if (v6 && t.fabric6) l(` neighbor ${t.fabric6} remote-as ${t.as}`);
  }
  const af = (fam: "4" | "6", addrs: string[]) => {
    l(` address-family ipv${fam} unicast`);
    for (const a of addrs) {
      l(`  neighbor ${a} activate`);
      if (mode === "rr") l(`  neighbor ${a} as-override`);
    }
    l(" exit-address-family");
  };
  af(
    "4",
    tors.map((t) => t.fabric4),
  );
  if (v6)
    af(
      "6",
      tors.flatMap((t) => (t.fabric6 ? [t.fabric6] : [])),
    );
  l("exit");
  return { zebra: "hostname external\n", bgpd: b.join("\n") + "\n", bfdd: "", staticd: "" };
}

/** The rack's ToR namespace: the rack bridge (the nodes' gateway) and a leg on the fabric. */
export async function ensureTorNetns(fabricNs: string, t: RackRouter): Promise<void> {
  for (const a of [t.ipv4, t.fabric4, t.ipv6, t.fabric6]) if (a !== undefined) ip(a);
  await ensureNetns(t.netns);
  await ensureBridge(t.netns, RACK_BRIDGE, t.ipv6 ? [t.ipv4, t.ipv6] : [t.ipv4]);
  await plugIntoBridge({
    bridgeNs: fabricNs,
    bridge: UNDERLAY_BRIDGE,
    port: `tor${t.rack}`,
    hostNs: t.netns,
    uplink: TOR_FABRIC_LINK,
    addresses: t.fabric6 ? [t.fabric4, t.fabric6] : [t.fabric4],
  });
  await enableForwarding(t.netns);
}

export async function ensureExternalNetns(fabricNs: string, e: ExternalRouter): Promise<void> {
  await ensureNetns(e.netns);
  await plugIntoBridge({
    bridgeNs: fabricNs,
    bridge: UNDERLAY_BRIDGE,
    port: "ext",
    hostNs: e.netns,
    uplink: EXTERNAL_LINK,
    addresses: e.ipv6 ? [e.ipv4, e.ipv6] : [e.ipv4],
  });
  await enableForwarding(e.netns);
}

export const routerPaths = (r: { frrDir: string }): FrrPaths => frrPaths(r.frrDir);

/** Writes the config and starts (or adopts) the router's FRR; returns the daemons' PIDs. */
export async function ensureFrr(r: { frrDir: string; netns: string }, cfg: FrrConfig): Promise<number[]> {
  const p = frrPaths(r.frrDir);
  await writeFrrConfig(p, cfg);
  return Object.values(await startFrr(p, r.netns));
}

export async function stopRouter(r: { frrDir: string }): Promise<number[]> {
  return stopFrr(frrPaths(r.frrDir));
}

/** Where a lab keeps its routers' FRR files: beside its own dir (that one is root-only; FRR runs as frr). */
export const frrRoot = (labDir: string): string => `${labDir}-frr`;
export const routerDir = (labDir: string, name: string): string => join(frrRoot(labDir), name);
