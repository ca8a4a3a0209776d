// The agent protocol's messages, written once as zod schemas; the TypeScript types are derived
// from them. The agent validates every request with these (shape, and the names that reach the
// kernel through src/kernel/validate.ts), so a bad request fails before anything is made.
// Clients (the plugin, the CLI, the lab) import only the types, so zod is not loaded at their start.
// Results are always in the CNI 1.1.0 shape; the plugin converts them to the caller's cniVersion.
import { z } from "zod";
import * as v from "../kernel/validate.js";

const kernelChecked = (check: (s: string) => string) =>
  z.string().superRefine((s, ctx) => {
    try {
      check(s);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
    }
  });

// CNI: container IDs are alphanumerics plus '_', '.', '-'; network names likewise.
const containerId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "containerId must be alphanumerics, '_', '.', '-'")
  .max(256);
const network = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "network name must be alphanumerics, '_', '.', '-'")
  .max(256);
const ifname = kernelChecked(v.ifname);
const netns = kernelChecked(v.netnsPath);
const optInt = z.number().int().optional();

// CNI 1.1.0 result parts (SPEC.md); keys the agent does not use are dropped when a request is read.
const cniInterface = z.object({
  name: z.string(),
  mac: z.string().optional(),
  mtu: optInt,
  sandbox: z.string().optional(),
  socketPath: z.string().optional(),
  pciID: z.string().optional(),
});
const cniIp = z.object({ address: z.string(), gateway: z.string().optional(), interface: optInt });
const cniRoute = z.object({
  dst: z.string(),
  gw: z.string().optional(),
  mtu: optInt,
  advmss: optInt,
  priority: optInt,
  table: optInt,
  scope: optInt,
});
const cniDns = z.object({
  nameservers: z.array(z.string()).optional(),
  domain: z.string().optional(),
  search: z.array(z.string()).optional(),
  options: z.array(z.string()).optional(),
});
const cniResult = z.object({
  cniVersion: z.string(),
  interfaces: z.array(cniInterface).optional(),
  ips: z.array(cniIp).optional(),
  routes: z.array(cniRoute).optional(),
  dns: cniDns.optional(),
});

/** Addresses chosen by a delegated IPAM plugin (e.g. host-local) instead of weft's own IPAM; they reach the kernel. */
const delegatedIpam = z.object({
  ips: z.array(cniIp.extend({ address: kernelChecked(v.cidr) })).min(1),
  routes: z.array(cniRoute.extend({ dst: kernelChecked(v.cidr) })).optional(),
});

const add = z.object({
  op: z.literal("add"),
  network,
  containerId,
  netns,
  ifname,
  /** CNI_ARGS as key/value pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, ...). */
  args: z.record(z.string(), z.string()).default({}),
  /** MTU override from the network config. */
  mtu: z.number().int().min(68).max(65535).optional(),
  ipam: delegatedIpam.optional(),
});
const del = z.object({
  op: z.literal("del"),
  network,
  containerId,
  ifname,
  /** Absent when the runtime no longer has the netns: DEL must still succeed. */
  netns: z.string().optional(),
  /** The addresses came from a delegated IPAM plugin: weft does not release them. */
  delegatedIpam: z.boolean().optional(),
});
const check = z.object({
  op: z.literal("check"),
  network,
  containerId,
  netns,
  ifname,
  prevResult: cniResult.extend({ cniVersion: z.string().optional() }),
  delegatedIpam: z.boolean().optional(),
});
const gc = z.object({
  op: z.literal("gc"),
  network,
  validAttachments: z.array(z.object({ containerID: z.string(), ifname: z.string() })).default([]),
});
const status = z.object({ op: z.literal("status"), network: z.string().default("") });
/** `weft ipam check [--fix]`: leaks and conflicts in this node's allocations; fix repairs them. */
const ipamCheck = z.object({ op: z.literal("ipam-check"), fix: z.boolean().optional() });

export const agentRequest = z.discriminatedUnion("op", [add, del, check, gc, status, ipamCheck]);

/** An allocation whose pod is gone, or a weft host link without an allocation. */
const ipamLeak = z.object({
  kind: z.enum(["allocation", "link"]),
  /** The host veth name. */
  hostIf: z.string(),
  network: z.string().optional(),
  containerId: z.string().optional(),
  ifname: z.string().optional(),
  addresses: z.array(z.string()).optional(),
  reason: z.string(),
});
/** An address routed or assigned twice, or an allocation outside the node's pod CIDRs. */
const ipamConflict = z.object({
  address: z.string(),
  reason: z.string(),
  network: z.string().optional(),
  containerId: z.string().optional(),
  ifname: z.string().optional(),
  devices: z.array(z.string()).optional(),
});
const ipamCheckReport = z.object({
  /** Allocated addresses (a dual-stack pod holds two). */
  allocations: z.number().int(),
  leaked: z.array(ipamLeak),
  conflicts: z.array(ipamConflict),
  /** With fix: what was repaired; leaked/conflicts then describe the state after the repair. */
  fixed: z.array(z.string()).optional(),
});

export const agentResponse = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), result: cniResult.optional(), report: ipamCheckReport.optional() }),
  z.object({ ok: z.literal(false), code: z.number().int(), msg: z.string(), details: z.string().optional() }),
]);

/** A request as the agent serves it (defaults filled in). */
export type AgentRequest = z.output<typeof agentRequest>;
/** A request as a client may send it (fields with defaults may be left out). */
export type AgentRequestInput = z.input<typeof agentRequest>;
export type AddRequest = z.output<typeof add>;
export type DelRequest = z.output<typeof del>;
export type CheckRequest = z.output<typeof check>;
export type GcRequest = z.output<typeof gc>;
export type StatusRequest = z.output<typeof status>;
export type IpamCheckRequest = z.output<typeof ipamCheck>;
export type DelegatedIpam = z.output<typeof delegatedIpam>;
export type AgentResponse = z.output<typeof agentResponse>;
export type IpamCheckReport = z.output<typeof ipamCheckReport>;
export type IpamLeak = z.output<typeof ipamLeak>;
export type IpamConflict = z.output<typeof ipamConflict>;

export type ParseOutcome = { ok: true; req: AgentRequest } | { ok: false; msg: string };

export function parseRequest(value: unknown): ParseOutcome {
  const r = agentRequest.safeParse(value);
  if (r.success) return { ok: true, req: r.data };
  const first = r.error.issues[0];
  const where = first.path.length ? `${first.path.join(".")}: ` : "";
  return { ok: false, msg: `invalid request: ${where}${first.message}` };
}
