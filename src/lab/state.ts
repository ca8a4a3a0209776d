// The lab's record of itself (DIR/state.json): the settings it was made with and everything it
// made, written before each thing is made so `lab down` can remove exactly that, even after a
// crash halfway through `lab up`.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { RealStateSchema } from "./realnode/state.js";

export const BACKENDS = ["vxlan", "host-gw", "vxlan-direct", "bgp"] as const;
export type Backend = (typeof BACKENDS)[number];

const ProcRefSchema = z.object({ pid: z.number().int(), start: z.string() });

export const LabSettingsSchema = z.object({
  nodes: z.number().int(),
  backend: z.enum(BACKENDS),
  dualStack: z.boolean(),
  etcdMembers: z.union([z.literal(1), z.literal(3)]),
  store: z.enum(["etcd", "kubernetes"]),
  /** "lab": weft's own kubelet (and agents); "real": containerd + kubelet 1.20 per node (src/lab/realnode/). */
  kubelet: z.enum(["lab", "real"]).default("lab"),
  /** bgp backend: nodes split into this many racks, each behind an FRR top-of-rack router (tor.ts). */
  racks: z.number().int().optional(),
  /** How the ToRs peer with their nodes: eBGP (an AS per rack) or as iBGP route reflectors. */
  torMode: z.enum(["ebgp", "rr"]).optional(),
});
export type LabSettings = z.input<typeof LabSettingsSchema>;

export const EtcdMemberSchema = z.object({
  name: z.string(),
  dir: z.string(),
  clientUrl: z.string(),
  peerUrl: z.string(),
  /** Absolute path of the member's unix socket (for agents in node namespaces). */
  socket: z.string(),
  proc: ProcRefSchema.optional(),
});
export type EtcdMember = z.infer<typeof EtcdMemberSchema>;

export const LabNodeSchema = z.object({
  name: z.string(),
  netns: z.string(),
  ipv4: z.string(),
  ipv6: z.string().optional(),
  dir: z.string(),
  socket: z.string(),
  cniBinDir: z.string(),
  cniConfDir: z.string(),
  /** Only in the local-store fallback; in etcd mode the agent leases them from the store. */
  podCidrs: z.array(z.string()).optional(),
  agent: ProcRefSchema.optional(),
  /** With --racks: the node's rack (its L2 segment and ToR). */
  rack: z.number().int().optional(),
  /** Kubernetes mode: the node's forwarder to the apiserver (127.0.0.1:6443 in the node). */
  apiProxy: ProcRefSchema.optional(),
});
export type LabNode = z.infer<typeof LabNodeSchema>;

export const LabStateSchema = z.object({
  version: z.literal(1),
  id: z.string(),
  dir: z.string(),
  settings: LabSettingsSchema,
  /** How the agents run: cluster mode on "etcd" or "kubernetes", or "local" (fallback: --store local --pod-cidr). */
  agentMode: z.enum(["etcd", "kubernetes", "local"]),
  /** Whether `weft cluster init` ran against the lab etcd. */
  clusterInit: z.boolean(),
  clusterCidrs: z.array(z.string()),
  namespaces: z.array(z.string()),
  underlay: z.object({ netns: z.string(), bridge: z.string() }),
  etcd: z.array(EtcdMemberSchema),
  /**
   * The lab etcd's certificates (client-certificate TLS on its client and peer URLs and unix
   * sockets). Absent only in a lab made by an older weft, whose etcd is plain.
   */
  etcdTls: z
    .object({
      caFile: z.string(),
      serverCertFile: z.string(),
      serverKeyFile: z.string(),
      clientCertFile: z.string(),
      clientKeyFile: z.string(),
    })
    .optional(),
  nodes: z.array(LabNodeSchema),
  /** With --racks: each rack's FRR top-of-rack router (tor.ts). */
  tors: z
    .array(
      z.object({
        rack: z.number().int(),
        netns: z.string(),
        as: z.number().int(),
        ipv4: z.string(),
        ipv6: z.string().optional(),
        fabric4: z.string(),
        fabric6: z.string().optional(),
        frrDir: z.string(),
      }),
    )
    .optional(),
  /** With --racks: the "external" namespace behind the ToRs (the fabric's FRR router). */
  external: z
    .object({
      netns: z.string(),
      as: z.number().int(),
      ipv4: z.string(),
      ipv6: z.string().optional(),
      frrDir: z.string(),
    })
    .optional(),
  /** With --racks: whether the Node objects got their rack=rN label. */
  labelled: z.boolean().optional(),
  kubelet: ProcRefSchema.optional(),
  /** --store kubernetes: the lab's kube-apiserver (over the lab etcd). */
  apiserver: z
    .object({
      dir: z.string(),
      url: z.string(),
      kubeconfig: z.string(),
      proc: ProcRefSchema.optional(),
      /** The machine-side forwarder from DIR/apiserver.sock to the apiserver. */
      proxy: ProcRefSchema.optional(),
    })
    .optional(),
  /** --kubelet real: what the real nodes made (src/lab/realnode/state.ts). */
  real: RealStateSchema.optional(),
  createdAt: z.string(),
  /** Set once `lab up` finished; a lab without it was interrupted. */
  ready: z.boolean(),
});
export type LabState = z.infer<typeof LabStateSchema>;

export function readState(file: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const parsed = LabStateSchema.safeParse(JSON.parse(text));
  if (!parsed.success)
    throw new Error(`${file} is not a lab state file this weft understands: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/** Atomic write: a reader sees the old or the new file, never half of one. */
export function writeState(file: string, s: LabState): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(s, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, file);
}

/** Human-readable differences between two settings, e.g. ["--nodes 2 (running: 3)"]. */
export function settingsDiff(want: LabSettings, have: LabSettings): string[] {
  const out: string[] = [];
  if (want.nodes !== have.nodes) out.push(`--nodes ${want.nodes} (running: ${have.nodes})`);
  if (want.backend !== have.backend) out.push(`--backend ${want.backend} (running: ${have.backend})`);
  if (want.dualStack !== have.dualStack)
    out.push(want.dualStack ? "--dual-stack (running: single-stack)" : "no --dual-stack (running: dual-stack)");
  if (want.etcdMembers !== have.etcdMembers)
    out.push(`--etcd-members ${want.etcdMembers} (running: ${have.etcdMembers})`);
  if (want.store !== have.store) out.push(`--store ${want.store} (running: ${have.store})`);
  if ((want.kubelet ?? "lab") !== (have.kubelet ?? "lab"))
    out.push(`--kubelet ${want.kubelet ?? "lab"} (running: ${have.kubelet ?? "lab"})`);
  if ((want.racks ?? 0) !== (have.racks ?? 0)) out.push(`--racks ${want.racks ?? 0} (running: ${have.racks ?? 0})`);
  if ((want.torMode ?? "ebgp") !== (have.torMode ?? "ebgp"))
    out.push(`--tor-mode ${want.torMode ?? "ebgp"} (running: ${have.torMode ?? "ebgp"})`);
  return out;
}
