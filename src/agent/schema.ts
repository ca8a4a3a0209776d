// Validation of requests arriving on the socket: shape (zod) and the names that reach the
// kernel (src/kernel/validate.ts), so a bad request fails before anything is made.
import { z } from "zod";
import * as v from "../kernel/validate.js";
import type { AgentRequest } from "./protocol.js";

const kernelChecked = (check: (s: string) => string) =>
  z.string().superRefine((s, ctx) => {
    try { check(s); } catch (e) { ctx.addIssue({ code: "custom", message: (e as Error).message }); }
  });

// CNI: container IDs are alphanumerics plus '_', '.', '-'; network names likewise.
const containerId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "containerId must be alphanumerics, '_', '.', '-'").max(256);
const network = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "network name must be alphanumerics, '_', '.', '-'").max(256);
const ifname = kernelChecked(v.ifname);
const netns = kernelChecked(v.netnsPath);
const ipConfig = z.object({ address: kernelChecked(v.cidr), gateway: z.string().optional(), interface: z.number().int().optional() });
const route = z.object({ dst: kernelChecked(v.cidr), gw: z.string().optional() }).passthrough();

const add = z.object({
  op: z.literal("add"), network, containerId, netns, ifname,
  args: z.record(z.string(), z.string()).default({}),
  mtu: z.number().int().min(68).max(65535).optional(),
  ipam: z.object({ ips: z.array(ipConfig).min(1), routes: z.array(route).optional() }).optional(),
});
const del = z.object({
  op: z.literal("del"), network, containerId, ifname,
  netns: z.string().optional(),
  delegatedIpam: z.boolean().optional(),
});
const check = z.object({
  op: z.literal("check"), network, containerId, netns, ifname,
  prevResult: z.object({ cniVersion: z.string().optional(), ips: z.array(z.object({ address: z.string() }).passthrough()).optional() }).passthrough(),
  delegatedIpam: z.boolean().optional(),
});
const gc = z.object({
  op: z.literal("gc"), network,
  validAttachments: z.array(z.object({ containerID: z.string(), ifname: z.string() })).default([]),
});
const status = z.object({ op: z.literal("status"), network: z.string().default("") });
const ipamCheck = z.object({ op: z.literal("ipam-check"), fix: z.boolean().optional() });

const request = z.discriminatedUnion("op", [add, del, check, gc, status, ipamCheck]);

export type ParseOutcome = { ok: true; req: AgentRequest } | { ok: false; msg: string };

export function parseRequest(value: unknown): ParseOutcome {
  const r = request.safeParse(value);
  if (r.success) return { ok: true, req: r.data as AgentRequest };
  const first = r.error.issues[0];
  const where = first.path.length ? `${first.path.join(".")}: ` : "";
  return { ok: false, msg: `invalid request: ${where}${first.message}` };
}
