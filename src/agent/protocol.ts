// The wire protocol between the CNI plugin executable and the node agent.
// One request per connection on the agent's unix socket: the plugin writes one JSON line,
// the agent answers with one JSON line and closes. Results are always in the CNI 1.1.0 shape;
// the plugin converts them to the caller's cniVersion.
import type { Attachment, IpConfig, Result, Route } from "../cni/types.js";

/** Addresses chosen by a delegated IPAM plugin (e.g. host-local) instead of weft's own IPAM. */
export interface DelegatedIpam {
  ips: IpConfig[];
  routes?: Route[];
}

export interface AddRequest {
  op: "add";
  network: string;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS as key/value pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, ...). */
  args: Record<string, string>;
  /** MTU override from the network config, if any. */
  mtu?: number;
  ipam?: DelegatedIpam;
}

export interface DelRequest {
  op: "del";
  network: string;
  containerId: string;
  /** May be absent: DEL must succeed when the runtime no longer has the netns. */
  netns?: string;
  ifname: string;
  /** true when addresses came from a delegated IPAM plugin (weft does not release them). */
  delegatedIpam?: boolean;
}

export interface CheckRequest {
  op: "check";
  network: string;
  containerId: string;
  netns: string;
  ifname: string;
  prevResult: Result;
  delegatedIpam?: boolean;
}

export interface GcRequest {
  op: "gc";
  network: string;
  validAttachments: Attachment[];
}

export interface StatusRequest {
  op: "status";
  network: string;
}

/** `weft ipam check [--fix]`: leaks and conflicts in this node's allocations. */
export interface IpamCheckRequest {
  op: "ipam-check";
  /** Repair what is found: release leaked allocations, delete orphan links and wrong routes. */
  fix?: boolean;
}

/** An allocation whose pod is gone, or a weft host link without an allocation. */
export interface IpamLeak {
  kind: "allocation" | "link";
  /** The host veth name. */
  hostIf: string;
  network?: string;
  containerId?: string;
  ifname?: string;
  addresses?: string[];
  reason: string;
}

/** An address routed or assigned twice, or an allocation outside the node's pod CIDRs. */
export interface IpamConflict {
  address: string;
  reason: string;
  network?: string;
  containerId?: string;
  ifname?: string;
  devices?: string[];
}

export interface IpamCheckReport {
  /** Number of allocated addresses (a dual-stack pod holds two). */
  allocations: number;
  leaked: IpamLeak[];
  conflicts: IpamConflict[];
  /** With fix: what was repaired; leaked/conflicts then describe the state after the repair. */
  fixed?: string[];
}

export type AgentRequest = AddRequest | DelRequest | CheckRequest | GcRequest | StatusRequest | IpamCheckRequest;

export type AgentResponse =
  | { ok: true; result?: Result; report?: IpamCheckReport }
  | { ok: false; code: number; msg: string; details?: string };
