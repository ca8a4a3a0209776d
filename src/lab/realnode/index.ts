// `weft lab up --kubelet real`: real nodes (containerd 1.6 CRI + kubelet 1.20 in each node's
// network and mount namespaces) and kube-controller-manager + kube-scheduler over the lab's
// kube-apiserver. The lab starts no weft here: weft is installed with kubectl (deploy/weft.yaml).
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { KubeClient } from "../../store/kubernetes/client.js";
import { nodeKubeconfig } from "../agents.js";
import type { StaticToken } from "../apiserver-process.js";
import { startNodeProxy, writeNodeKubeconfig } from "../api-proxy.js";
import { isAlive, logTail, stopProc } from "../procs.js";
import type { LabState } from "../state.js";
import { ensureControllerManager, ensureScheduler, type ControlInput } from "./control.js";
import {
  binaries,
  mkdirsRecorded,
  readSysctls,
  RealNodeError,
  removeMadeDirs,
  restoreSysctls,
  NODE_BINDS,
} from "./host.js";
import { imageArchives } from "./images.js";
import { downNode, ensureContainerd, ensureKubelet, ensureNodeMounts, importImages, planRealNode } from "./node.js";

export { imageArchives } from "./images.js";
export { RealNodeError } from "./host.js";
export { findRealPod, realPods, withProbeServers, type RealPod } from "./pods.js";

type Progress = (line: string) => void;

/** Throws, saying what to build, when a binary or the image archives are missing. */
export function realPreflight(): void {
  binaries();
  imageArchives();
}

/** Brings up (or completes) the real nodes and the control plane; `save` writes the state file. */
export async function realUp(st: LabState, save: () => void, progress: Progress): Promise<void> {
  if (!st.apiserver) throw new RealNodeError("--kubelet real needs the lab's kube-apiserver");
  const b = binaries();
  const archives = imageArchives();
  st.real ??= { madeDirs: [], nodes: st.nodes.map((n) => planRealNode(st.id, n)) };
  const real = st.real;
  save();
  // Mount points over which each node binds its own directories: made on the machine only if
  // absent (empty), and removed again at `lab down`.
  for (const b of NODE_BINDS) {
    const made = mkdirsRecorded(b.target);
    if (made.length) {
      real.madeDirs.push(...made);
      save();
    }
  }
  if (!real.sysctls) {
    real.sysctls = readSysctls();
    save();
  }
  for (let i = 0; i < st.nodes.length; i++) {
    const n = st.nodes[i];
    mkdirSync(n.dir, { recursive: true, mode: 0o700 });
    // The kubelet's own identity (system:node:NAME), as the apiserver's static token for it.
    const own = join(st.apiserver.dir, `kubeconfig-${kubeletToken(n.name).name}`);
    if (!existsSync(own))
      throw new RealNodeError(
        `${own} is missing: the lab's kube-apiserver was started without node ${n.name}'s kubelet token; run \`weft lab down\` and \`weft lab up\` again`,
      );
    const kc = nodeKubeconfig(n);
    writeNodeKubeconfig(own, kc);
    st.nodes[i] = { ...n, apiProxy: startNodeProxy(st.dir, n.netns, n.dir, n.apiProxy) };
    save();
    ensureNodeMounts(real.nodes[i]);
    progress(`node ${n.name}: containerd (CRI), log ${join(n.dir, "containerd", "containerd.log")}`);
    real.nodes[i] = await ensureContainerd(b, st.nodes[i], real.nodes[i]);
    save();
    const pending = archives.filter((a) => !real.nodes[i].imported.includes(a)).length;
    if (pending) progress(`node ${n.name}: importing ${pending} image archive(s)`);
    real.nodes[i] = importImages(b, st.nodes[i], real.nodes[i], archives);
    save();
    if (!isAlive(real.nodes[i].kubelet)) {
      progress(`node ${n.name}: kubelet, log ${join(n.dir, "kubelet.log")}`);
      real.nodes[i] = ensureKubelet(b, st.nodes[i], real.nodes[i], {
        kubeconfig: kc,
        dualStack: st.settings.dualStack,
      });
      save();
    }
  }
  // kube-controller-manager and kube-scheduler: the admin token, through n1's forwarder (they run in n1's namespace).
  const control = join(st.dir, "control-kubeconfig");
  writeNodeKubeconfig(st.apiserver.kubeconfig, control);
  const c: ControlInput = {
    labDir: st.dir,
    node: st.nodes[0],
    kubeconfig: control,
    saKeyFile: join(st.apiserver.dir, "sa.key"),
    rootCaFile: join(st.apiserver.dir, "serving.crt"),
    clusterCidrs: st.clusterCidrs,
  };
  progress(`kube-controller-manager and kube-scheduler, logs in ${st.dir}`);
  real.controllerManager = ensureControllerManager(b, c, real.controllerManager);
  save();
  real.scheduler = ensureScheduler(b, c, real.scheduler);
  save();
  await waitNodesRegistered(st);
}

/** A real kubelet's static token: user system:node:NAME in system:nodes (the Node authorizer's and NodeRestriction's). */
export function kubeletToken(node: string): StaticToken {
  return { name: `node-${node}`, user: `system:node:${node}`, groups: ["system:nodes"] };
}

async function waitNodesRegistered(st: LabState, timeoutMs = 180_000): Promise<void> {
  const c = KubeClient.fromFile(st.apiserver!.kubeconfig);
  const until = Date.now() + timeoutMs;
  const want = st.nodes.map((n) => n.name);
  for (;;) {
    for (const [i, r] of (st.real?.nodes ?? []).entries()) {
      if (!isAlive(r.kubelet))
        throw new RealNodeError(`node ${r.name}: the kubelet exited: ${logTail(join(st.nodes[i].dir, "kubelet.log"))}`);
    }
    for (const [what, p] of [
      ["kube-controller-manager", st.real?.controllerManager],
      ["kube-scheduler", st.real?.scheduler],
    ] as const) {
      if (!isAlive(p)) throw new RealNodeError(`${what} exited: ${logTail(join(st.dir, `${what}.log`))}`);
    }
    let have: string[] = [];
    try {
      const l = await c.request<{ items: Array<{ metadata: { name: string } }> }>("GET", "/api/v1/nodes");
      have = l.items.map((x) => x.metadata.name);
    } catch {
      // the apiserver is busy; ask again
    }
    const missing = want.filter((w) => !have.includes(w));
    if (!missing.length) return;
    if (Date.now() > until)
      throw new RealNodeError(
        `node(s) ${missing.join(", ")} did not register within ${timeoutMs / 1000} s: ${logTail(join(st.nodes.find((n) => n.name === missing[0])!.dir, "kubelet.log"))}`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Removes everything the real nodes made and restores the host sysctls; returns problems left. */
export async function realDown(st: LabState, progress: Progress): Promise<string[]> {
  const real = st.real;
  if (!real) return [];
  progress("stopping kube-scheduler and kube-controller-manager");
  await Promise.all([stopProc(real.scheduler), stopProc(real.controllerManager)]);
  progress(`stopping ${real.nodes.length} real node(s): kubelet, pods, containerd, shims, mounts, cgroups`);
  const problems = (await Promise.all(real.nodes.map((r) => downNode(r)))).flat();
  if (real.sysctls) restoreSysctls(real.sysctls);
  removeMadeDirs(real.madeDirs);
  return problems;
}
