// Pods on real nodes, as `lab probe`, `matrix` and `exec` see them: the apiserver says which pods
// run where with which addresses; the node's containerd says which process holds the pod's
// sandbox, whose /proc/PID/ns/net is the pod's network namespace. Probes run from a short-lived
// pod server (the lab's, serving no ports) started in the source pod's namespace for the call.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { KubeClient } from "../../store/kubernetes/client.js";
import { controlCall } from "../probe-protocol.js";
import type { LabPod } from "../pods-state.js";
import { childEnv } from "../procs.js";
import type { LabState } from "../state.js";
import { binaries, RealNodeError, run } from "./host.js";
import { ctr } from "./node.js";

const POD_SERVER_MAIN = join(dirname(fileURLToPath(import.meta.url)), "..", "pod-server.js");

export interface RealPod extends LabPod {
  /** /proc/PID/ns/net of the pod's sandbox (pause) process. */
  netnsPath: string;
}

interface PodJson {
  metadata: { namespace: string; name: string; uid: string };
  spec: {
    nodeName?: string;
    hostNetwork?: boolean;
    containers: Array<{ ports?: Array<{ containerPort: number; protocol?: string }> }>;
  };
  status: { phase?: string; podIP?: string; podIPs?: Array<{ ip: string }> };
}

function client(st: LabState): KubeClient {
  if (!st.apiserver) throw new RealNodeError("this lab has no kube-apiserver");
  return KubeClient.fromFile(st.apiserver.kubeconfig);
}

/** Sandbox PIDs by pod UID on one node (from its containerd). */
function sandboxPids(st: LabState, nodeName: string): Map<string, number> {
  const n = st.nodes.find((x) => x.name === nodeName);
  const r = st.real?.nodes.find((x) => x.name === nodeName);
  const out = new Map<string, number>();
  if (!n || !r) return out;
  const b = binaries();
  const tasks = new Map<string, number>();
  for (const line of run(ctr(b, n, r, ["tasks", "ls"]), "list tasks")
    .split("\n")
    .slice(1)) {
    const [id, pid, status] = line.trim().split(/\s+/);
    if (id && status === "RUNNING") tasks.set(id, Number(pid));
  }
  const text = run(ctr(b, n, r, ["containers", "ls", 'labels."io.cri-containerd.kind"==sandbox']), "list sandboxes");
  for (const line of text.split("\n").slice(1)) {
    const id = line.trim().split(/\s+/)[0];
    if (!id || !tasks.has(id)) continue;
    const info = JSON.parse(run(ctr(b, n, r, ["containers", "info", id]), "sandbox info")) as {
      Labels?: Record<string, string>;
    };
    const uid = info.Labels?.["io.kubernetes.pod.uid"];
    if (uid) out.set(uid, tasks.get(id)!);
  }
  return out;
}

/** Running pods with an address and a sandbox process, keyed NS/NAME. */
export async function realPods(st: LabState): Promise<Map<string, RealPod>> {
  const c = client(st);
  const list = await c.request<{ items: PodJson[] }>("GET", "/api/v1/pods");
  const byNode = new Map<string, Map<string, number>>();
  const out = new Map<string, RealPod>();
  for (const p of list.items) {
    const node = p.spec.nodeName;
    // hostNetwork pods (a CNI's own DaemonSet) have the node's address, not a pod network one.
    if (!node || p.spec.hostNetwork || p.status.phase !== "Running") continue;
    const ips = (p.status.podIPs?.map((x) => x.ip) ?? (p.status.podIP ? [p.status.podIP] : [])).sort(
      (a, b) => Number(a.includes(":")) - Number(b.includes(":")),
    );
    if (!ips.length) continue;
    if (!byNode.has(node)) byNode.set(node, sandboxPids(st, node));
    const pid = byNode.get(node)!.get(p.metadata.uid);
    if (pid === undefined) continue;
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    out.set(key, {
      namespace: p.metadata.namespace,
      name: p.metadata.name,
      uid: p.metadata.uid,
      node,
      netns: `pid:${pid}`,
      netnsPath: `/proc/${pid}/ns/net`,
      containerId: "",
      ips,
      ports: p.spec.containers.flatMap((ct) =>
        (ct.ports ?? []).map((x) => ({
          port: x.containerPort,
          protocol: (x.protocol ?? "TCP") as "TCP" | "UDP" | "SCTP",
        })),
      ),
      controlSocket: "",
      phase: "Running",
    });
  }
  return out;
}

export async function findRealPod(st: LabState, ref: string): Promise<RealPod> {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/.test(ref))
    throw new RealNodeError(`"${ref}": name a pod as NAMESPACE/NAME`);
  const pods = await realPods(st);
  const p = pods.get(ref);
  if (!p)
    throw new RealNodeError(
      `pod ${ref} is not running on a lab node (running: ${[...pods.keys()].join(", ") || "none"}); see kubectl get pods`,
    );
  return p;
}

/**
 * Runs fn with a probe server in each source pod's network namespace (each pod's controlSocket
 * set), and ends them all afterwards, also when fn throws.
 */
export async function withProbeServers<T>(st: LabState, pods: readonly RealPod[], fn: () => Promise<T>): Promise<T> {
  const dir = join(st.dir, "probe");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const children: ChildProcess[] = [];
  try {
    await Promise.all(
      pods.map(async (p) => {
        const before = readlinkSync(p.netnsPath);
        const h = createHash("sha256").update(`${process.pid}/${p.namespace}/${p.name}`).digest("hex").slice(0, 16);
        const sock = join(dir, `${h}.sock`);
        const child = spawn(
          "nsenter",
          [`--net=${p.netnsPath}`, "--", process.execPath, POD_SERVER_MAIN, "--control", sock, "--ports", "[]"],
          { stdio: ["ignore", "ignore", "pipe"], env: childEnv() },
        );
        children.push(child);
        let err = "";
        child.stderr?.setEncoding("utf8").on("data", (d: string) => (err += d));
        const until = Date.now() + 20_000;
        for (;;) {
          if (child.exitCode !== null)
            throw new RealNodeError(`probe server in ${p.namespace}/${p.name}: ${err.trim()}`);
          try {
            const r = await controlCall(sock, { op: "ping" }, 2000);
            if (r.ok) break;
          } catch {
            // not listening yet
          }
          if (Date.now() > until)
            throw new RealNodeError(`probe server in ${p.namespace}/${p.name} did not start: ${err.trim()}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        // The sandbox may have been replaced meanwhile: the server must sit in the pod's namespace.
        if (readlinkSync(p.netnsPath) !== before) throw new RealNodeError(`pod ${p.namespace}/${p.name} was restarted`);
        p.controlSocket = sock;
      }),
    );
    return await fn();
  } finally {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(
      children.map((c) =>
        c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once("exit", r)),
      ),
    );
  }
}
