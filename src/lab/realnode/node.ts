// One real node: its mount namespace (own CNI, netns, containerd and log directories over the
// standard paths), containerd with the CRI plugin and the kubelet, both inside the node's network
// and mount namespaces (nsenter by argument arrays; nsenter execs, so the recorded PID is the
// daemon's own).
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { netnsPathOf } from "../names.js";
import { isAlive, logTail, spawnDetached, stopProc, type ProcRef } from "../procs.js";
import type { LabNode } from "../state.js";
import { containerdConfig, kubeletConfig, SANDBOX_IMAGE } from "./config.js";
import {
  ensureMountNamespace,
  makeCgroupRoot,
  NODE_BINDS,
  processesInCgroupRoot,
  processesInMountNs,
  RealNodeError,
  releaseMountNamespace,
  removeCgroupRoot,
  run,
  type Binaries,
} from "./host.js";
import type { RealNode } from "./state.js";
import { builtWeftImage, manifestImage } from "./images.js";

/** Debian's containernetworking-plugins. */
export const HOST_CNI_DIR = "/usr/lib/cni";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function planRealNode(labId: string, n: LabNode): RealNode {
  return {
    name: n.name,
    mntns: join(n.dir, "mntns"),
    binds: NODE_BINDS.map((b) => ({ source: join(n.dir, b.sub), target: b.target })),
    containerdSocket: join(n.dir, "containerd", "containerd.sock"),
    containerdConfig: join(n.dir, "containerd", "config.toml"),
    imported: [],
    kubeletRoot: join(n.dir, "kubelet"),
    cgroupRoot: `/${labId}-${n.name}`,
  };
}

/** argv prefix: run inside the node's mount and network namespaces. */
export function inNode(n: LabNode, r: RealNode): string[] {
  return ["nsenter", `--mount=${r.mntns}`, `--net=${netnsPathOf(n.netns)}`, "--"];
}

export function ctr(b: Binaries, n: LabNode, r: RealNode, args: readonly string[]): string[] {
  return [...inNode(n, r), b.ctr, "--address", r.containerdSocket, "--namespace", "k8s.io", ...args];
}

/** The host plugins containerd's CRI always runs (loopback) or a chain may name (portmap). */
const HOST_PLUGINS = ["loopback", "portmap"];

export function ensureNodeMounts(r: RealNode): void {
  ensureMountNamespace(r.mntns, r.binds);
  // containerd has one bin_dir: the node's /opt/cni/bin needs loopback beside the CNI's own plugin.
  const bin = r.binds.find((b) => b.target === "/opt/cni/bin")!.source;
  for (const p of HOST_PLUGINS) {
    const src = join(HOST_CNI_DIR, p);
    if (!existsSync(src))
      throw new RealNodeError(`${src} is missing: install Debian's containernetworking-plugins (scripts/setup.sh)`);
    if (!existsSync(join(bin, p))) copyFileSync(src, join(bin, p));
  }
}

/** Starts the node's containerd unless it runs, and waits until it answers. */
export async function ensureContainerd(b: Binaries, n: LabNode, r: RealNode): Promise<RealNode> {
  if (isAlive(r.containerd)) return r;
  const dir = join(n.dir, "containerd");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(
    r.containerdConfig,
    containerdConfig({
      root: join(dir, "root"),
      state: join(dir, "state"),
      socket: r.containerdSocket,
      opt: join(dir, "opt"),
    }),
    { mode: 0o600 },
  );
  const log = join(dir, "containerd.log");
  const proc = spawnDetached([...inNode(n, r), b.containerd, "--config", r.containerdConfig], { log });
  const out = { ...r, containerd: proc };
  const until = Date.now() + 60_000;
  for (;;) {
    if (!isAlive(proc)) throw new RealNodeError(`node ${n.name}: containerd exited: ${logTail(log)}`);
    if (existsSync(r.containerdSocket)) {
      try {
        run(ctr(b, n, r, ["version"]), "containerd version", 10_000);
        return out;
      } catch {
        // not serving yet
      }
    }
    if (Date.now() > until)
      throw new RealNodeError(`node ${n.name}: containerd did not answer within 60 s: ${logTail(log)}`);
    await sleep(100);
  }
}

/** Imports every archive not imported yet; the pause image must be among the results. */
export function importImages(b: Binaries, n: LabNode, r: RealNode, archives: readonly string[]): RealNode {
  const imported = [...r.imported];
  for (const a of archives) {
    if (imported.includes(a)) continue;
    run(ctr(b, n, r, ["images", "import", a]), `node ${n.name}: import ${a}`, 300_000);
    imported.push(a);
  }
  // The manifest's tag for the image built from this checkout (kubectl apply -f deploy/weft.yaml as is).
  const built = builtWeftImage();
  const named = manifestImage();
  if (built && named && built !== named)
    run(ctr(b, n, r, ["images", "tag", "--force", built, named]), `node ${n.name}: tag ${built} as ${named}`);
  const have = run(ctr(b, n, r, ["images", "ls", "-q"]), "list images").split("\n");
  if (!have.includes(SANDBOX_IMAGE))
    throw new RealNodeError(
      `node ${n.name}: the archives (${archives.join(", ")}) hold no ${SANDBOX_IMAGE}, the sandbox image every pod needs: build it with scripts/image.sh`,
    );
  return { ...r, imported };
}

export interface KubeletInput {
  kubeconfig: string;
  dualStack: boolean;
}

export function ensureKubelet(b: Binaries, n: LabNode, r: RealNode, k: KubeletInput): RealNode {
  if (isAlive(r.kubelet)) return r;
  mkdirSync(r.kubeletRoot, { recursive: true, mode: 0o700 });
  makeCgroupRoot(r.cgroupRoot);
  const cfg = join(n.dir, "kubelet.yaml");
  writeFileSync(cfg, kubeletConfig({ cgroupRoot: r.cgroupRoot, dualStack: k.dualStack }), { mode: 0o600 });
  const proc: ProcRef = spawnDetached(
    [
      ...inNode(n, r),
      b.kubelet,
      `--config=${cfg}`,
      `--kubeconfig=${k.kubeconfig}`,
      "--container-runtime=remote",
      `--container-runtime-endpoint=unix://${r.containerdSocket}`,
      `--pod-infra-container-image=${SANDBOX_IMAGE}`,
      `--hostname-override=${n.name}`,
      `--node-ip=${[n.ipv4, ...(n.ipv6 ? [n.ipv6] : [])].join(",")}`,
      `--root-dir=${r.kubeletRoot}`,
      `--volume-plugin-dir=${join(r.kubeletRoot, "volume-plugins")}`,
      "--v=2",
    ],
    { log: join(n.dir, "kubelet.log") },
  );
  return { ...r, kubelet: proc };
}

async function killAll(pids: readonly number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (let i = 0; i < 300 && pids.some((p) => existsSync(`/proc/${p}`)); i++) await sleep(10);
}

/**
 * Everything of one node goes: the kubelet (so it starts nothing new), the pods' processes (all
 * in the node's cgroup tree), containerd, the shims (left in the node's mount namespace), then the
 * mount namespace itself (its mounts with it: overlays, shm, kubelet tmpfs, pod netns binds) and
 * the cgroup tree. Returns problems it could not solve.
 */
export async function downNode(r: RealNode): Promise<string[]> {
  await stopProc(r.kubelet, 5000);
  await killAll(processesInCgroupRoot(r.cgroupRoot));
  await stopProc(r.containerd, 5000);
  await killAll(processesInMountNs(r.mntns));
  await killAll(processesInCgroupRoot(r.cgroupRoot));
  const problems: string[] = [];
  try {
    releaseMountNamespace(r.mntns);
  } catch (e) {
    problems.push((e as Error).message);
  }
  for (let i = 0; i < 50; i++) {
    const left = removeCgroupRoot(r.cgroupRoot);
    if (!left.length) break;
    if (i === 49) problems.push(`cgroups left: ${left.join(", ")}`);
    await sleep(100);
  }
  return problems;
}
