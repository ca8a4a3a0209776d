// What the lab kubelet runs (DIR/kubelet/pods.json): one record per pod, written before its
// namespace is made and updated as it is wired, so `lab down` and a restarted kubelet find
// everything, and `lab probe`/`matrix`/`exec` find pods without asking the store.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";

const ProcRefSchema = z.object({ pid: z.number().int(), start: z.string() });

export const LabPodSchema = z.object({
  namespace: z.string(),
  name: z.string(),
  uid: z.string(),
  node: z.string(),
  netns: z.string(),
  containerId: z.string(),
  /** Pod addresses (no prefix), IPv4 first. */
  ips: z.array(z.string()),
  ports: z.array(z.object({ port: z.number().int(), protocol: z.enum(["TCP", "UDP", "SCTP"]) })),
  controlSocket: z.string(),
  /** The CNI result of the last plugin in the chain: what DEL gets as prevResult. */
  cniResult: z.unknown().optional(),
  server: ProcRefSchema.optional(),
  phase: z.enum(["Creating", "Running", "Failed", "Deleting"]),
  message: z.string().optional(),
});
export type LabPod = z.infer<typeof LabPodSchema>;

export const PodsFileSchema = z.object({ pods: z.record(z.string(), LabPodSchema) });
export type PodsFile = z.infer<typeof PodsFileSchema>;

export function podsFile(labDir: string): string {
  return join(labDir, "kubelet", "pods.json");
}

export function podKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function readPods(labDir: string): PodsFile {
  try {
    return PodsFileSchema.parse(JSON.parse(readFileSync(podsFile(labDir), "utf8")));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { pods: {} };
    throw new Error(`${podsFile(labDir)}: ${(e as Error).message}`);
  }
}

export function writePods(labDir: string, f: PodsFile): void {
  const file = podsFile(labDir);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(f, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, file);
}
