// What `lab up --kubelet real` made, recorded in the lab's state file before each thing is made,
// so `lab down` removes exactly that (and restores what the kubelet changed on the host).
import { z } from "zod";

const ProcRefSchema = z.object({ pid: z.number().int(), start: z.string() });

export const RealNodeSchema = z.object({
  name: z.string(),
  /** The node's mount namespace, bound to this file (DIR/nX/mntns). */
  mntns: z.string(),
  /** Per-node directories bound over the standard host paths inside that mount namespace. */
  binds: z.array(z.object({ source: z.string(), target: z.string() })),
  containerdSocket: z.string(),
  containerdConfig: z.string(),
  containerd: ProcRefSchema.optional(),
  /** Image archives imported into this node's containerd (k8s.io namespace). */
  imported: z.array(z.string()).default([]),
  kubeletRoot: z.string(),
  /** The kubelet's cgroupRoot ("/ID-nX"), made in every cgroup v1 hierarchy by the lab. */
  cgroupRoot: z.string(),
  kubelet: ProcRefSchema.optional(),
});
export type RealNode = z.infer<typeof RealNodeSchema>;

export const RealStateSchema = z.object({
  /** Host sysctls the kubelet sets (not namespaced): their values before the first kubelet started. */
  sysctls: z.record(z.string(), z.string()).optional(),
  /** Empty mount points the lab made on the host (absent before), removed again at `lab down`. */
  madeDirs: z.array(z.string()).default([]),
  controllerManager: ProcRefSchema.optional(),
  scheduler: ProcRefSchema.optional(),
  nodes: z.array(RealNodeSchema),
});
export type RealState = z.infer<typeof RealStateSchema>;
