// What the agent needs from the kernel to wire pods, as a typed interface: NetlinkKernel
// (netlink/) and IprouteKernel (iproute/) implement it; cases.ts is the suite both pass.

export type Family = 4 | 6;

export interface PodAddress {
  family: Family;
  /** Plain address, no prefix. */
  address: string;
  /** 32 / 128 in the routed design. */
  prefix: number;
}

export interface PodRoute {
  /** Destination CIDR, e.g. 0.0.0.0/0. */
  dst: string;
  family: Family;
}

export interface PodWiring {
  /** Host end of the veth pair, in the agent's own namespace. */
  hostIf: string;
  hostMac: string;
  /** Pod end, created straight in the pod namespace. */
  podIf: string;
  podMac: string;
  netns: string;
  mtu: number;
  addresses: PodAddress[];
  /** Routes in the pod besides its default routes, all via the link-local gateway. */
  extraRoutes: PodRoute[];
}

export interface LinkInfo {
  name: string;
  ifindex: number;
  mtu: number;
  mac: string;
  up: boolean;
}

export interface RouteInfo {
  dst: string;
  dev: string;
  gateway?: string;
}

export interface PodView {
  link: LinkInfo;
  /** Addresses on the pod interface as address/prefix (global scope only). */
  addresses: string[];
  routes: RouteInfo[];
}

/** IPv4 gateway the pod sees; answered by the host end (proxy_arp, plus a permanent neighbour). */
export const GATEWAY_V4 = "169.254.1.1";
/** IPv6 gateway: a link-local address on every host end. */
export const GATEWAY_V6 = "fe80::1";

export interface PodKernel {
  /** Turns on IPv4 and IPv6 forwarding in the agent's own network namespace. */
  enableForwarding(): Promise<void>;
  /** MTU of the default route's device, else the largest non-loopback, non-weft link, else 1500. */
  underlayMtu(isOwnLink: (name: string) => boolean): Promise<number>;
  /**
   * Creates the veth pair, addresses and routes on both sides. Leaves partial work on failure
   * (deleting the host end undoes all of it). Returns the families whose default route it set:
   * a family the pod already has a default route for (another interface) is left alone.
   */
  wirePod(w: PodWiring): Promise<{ defaultRoutes: Family[] }>;
  /** Deletes host veths (their pod ends go with them). Absent ones are skipped. */
  deleteHostLinks(names: string[]): Promise<void>;
  /** Links in the agent's namespace. */
  hostLinks(): Promise<LinkInfo[]>;
  /** Routes (main table, both families) in the agent's namespace. */
  hostRoutes(): Promise<RouteInfo[]>;
  deleteHostRoute(r: RouteInfo): Promise<void>;
  /** The pod interface with its addresses and routes, or null when it does not exist. */
  inspectPod(netns: string, ifname: string): Promise<PodView | null>;
  linkExistsIn(netns: string, ifname: string): Promise<boolean>;
}
