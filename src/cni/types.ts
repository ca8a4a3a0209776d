// CNI spec types (SPEC.md 1.1.0). weft works internally in the 1.1.0 result shape and converts
// to the caller's version only at the edge (see result.ts).

export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION" | "GC" | "STATUS";

/** Well-known error codes from the spec ("Error" section). */
export const CniErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  PluginNotAvailableLimitedConnectivity: 51,
} as const;

/** A CNI error as it goes on stdout. */
export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface IpConfig {
  /** CIDR notation: the address with the prefix length of its subnet, e.g. "10.1.0.5/32". */
  address: string;
  gateway?: string;
  interface?: number;
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** The 1.1.0 success result; the canonical internal form. */
export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IpConfig[];
  routes?: Route[];
  dns?: Dns;
}

export interface IpamConfig {
  type: string;
  [key: string]: unknown;
}

/** One plugin's configuration as the runtime hands it to the plugin on stdin. */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  disableCheck?: boolean;
  disableGC?: boolean;
  capabilities?: Record<string, boolean>;
  runtimeConfig?: Record<string, unknown>;
  args?: Record<string, unknown>;
  ipam?: IpamConfig;
  dns?: Dns;
  prevResult?: unknown;
  /** weft's own settings. */
  socket?: string;
  mtu?: number;
  [key: string]: unknown;
}

export interface Attachment {
  containerID: string;
  ifname: string;
}
