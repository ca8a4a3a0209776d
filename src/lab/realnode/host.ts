// Host-side pieces of a real node: the binaries, the node's mount namespace, its cgroup root, the
// host sysctls the kubelet sets, and finding the processes that belong to a node. All commands
// are argument arrays; nothing here touches the machine's network namespace.
import { spawnSync } from "node:child_process";
import {
  type Dirent,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

export class RealNodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RealNodeError";
  }
}

function cacheDir(): string {
  return process.env.WEFT_CACHE || "/var/cache/weft";
}

export interface Binaries {
  kubelet: string;
  controllerManager: string;
  scheduler: string;
  containerd: string;
  ctr: string;
}

/** The binaries a real node needs, each checked, with what to do when one is missing. */
export function binaries(): Binaries {
  const c = cacheDir();
  const b: Binaries = {
    kubelet: join(c, "kubelet"),
    controllerManager: join(c, "kube-controller-manager"),
    scheduler: join(c, "kube-scheduler"),
    containerd: process.env.WEFT_CONTAINERD || "/usr/bin/containerd",
    ctr: process.env.WEFT_CTR || "/usr/bin/ctr",
  };
  const missing = Object.values(b).filter((p) => !existsSync(p));
  if (missing.length)
    throw new RealNodeError(
      `--kubelet real needs ${missing.join(", ")}: build the Kubernetes binaries with scripts/kube-binaries.sh (into $WEFT_CACHE, default /var/cache/weft) and install containerd (scripts/setup.sh)`,
    );
  return b;
}

export function run(argv: readonly string[], what: string, timeoutMs = 120_000): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", timeout: timeoutMs });
  if (r.status !== 0)
    throw new RealNodeError(
      `${what}: ${argv[0]} ${argv.slice(1).join(" ")}: ${(r.stderr || String(r.error ?? `exit ${r.status}`)).trim()}`,
    );
  return r.stdout;
}

// ---- sysctls ---------------------------------------------------------------------------------

/** What the kubelet's container manager sets host-wide (container_manager_linux.go setupKernelTunables). */
export const KUBELET_SYSCTLS = ["vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"] as const;

export function readSysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of KUBELET_SYSCTLS) out[k] = readFileSync(`/proc/sys/${k}`, "utf8").trim();
  return out;
}

/** Writes back the saved values; only keys the kubelet sets, only integers. */
export function restoreSysctls(saved: Record<string, string>): void {
  for (const k of KUBELET_SYSCTLS) {
    const v = saved[k];
    if (v === undefined || !/^-?[0-9]+$/.test(v)) continue;
    if (readFileSync(`/proc/sys/${k}`, "utf8").trim() !== v) writeFileSync(`/proc/sys/${k}`, v);
  }
}

// ---- mount points and the node's mount namespace ----------------------------------------------

/**
 * The host paths that each node sees as its own directory (a bind inside the node's mount
 * namespace): what containerd, the kubelet and a CNI DaemonSet's hostPaths use.
 */
export const NODE_BINDS: ReadonlyArray<{ target: string; sub: string }> = [
  { target: "/opt/cni/bin", sub: "cni/bin" },
  { target: "/etc/cni/net.d", sub: "cni/net.d" },
  { target: "/var/lib/cni", sub: "host/var-lib-cni" },
  { target: "/run/netns", sub: "host/netns" },
  { target: "/run/containerd", sub: "host/run-containerd" },
  { target: "/var/log/pods", sub: "host/log-pods" },
  { target: "/var/log/containers", sub: "host/log-containers" },
  { target: "/var/lib/weft", sub: "host/var-lib-weft" },
  { target: "/run/weft", sub: "host/run-weft" },
];

/** mkdir -p that returns the directories it made (outermost first), to remove them again later. */
export function mkdirsRecorded(path: string): string[] {
  const made: string[] = [];
  const parts = path.split("/").filter(Boolean);
  let cur = "";
  for (const p of parts) {
    cur += `/${p}`;
    if (!existsSync(cur)) {
      mkdirSync(cur, { mode: 0o755 });
      made.push(cur);
    }
  }
  return made;
}

/** Removes the directories the lab made, deepest first, only while empty. */
export function removeMadeDirs(dirs: readonly string[]): void {
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
    try {
      rmdirSync(d);
    } catch {
      // not empty (someone else uses it now) or gone: left alone
    }
  }
}

function mountPoints(): Set<string> {
  const out = new Set<string>();
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f.length > 4) out.add(f[4].replace(/\\040/g, " "));
  }
  return out;
}

export function isMounted(path: string): boolean {
  return mountPoints().has(path);
}

/**
 * Makes the node's mount namespace (bound to `file`) unless it exists: a copy of the machine's
 * mounts, slave so nothing made inside reaches the machine, each bind of `binds` over its host
 * path, and then everything made rshared inside (only there) so containerd accepts HostToContainer
 * and Bidirectional volumes and the kubelet's mounts reach the containers.
 */
export function ensureMountNamespace(file: string, binds: ReadonlyArray<{ source: string; target: string }>): void {
  if (isMounted(file)) return;
  if (!existsSync(file)) writeFileSync(file, "", { mode: 0o600 });
  run(["unshare", `--mount=${file}`, "--propagation", "slave", "true"], "make the node's mount namespace");
  for (const b of binds) {
    mkdirSync(b.source, { recursive: true, mode: 0o755 });
    run(["nsenter", `--mount=${file}`, "--", "mount", "--bind", b.source, b.target], `bind ${b.target}`);
  }
  run(["nsenter", `--mount=${file}`, "--", "mount", "--make-rshared", "/"], "make the node's mounts shared");
}

/** Unbinds the node's mount namespace: once no process is left in it, every mount inside goes with it. */
export function releaseMountNamespace(file: string): void {
  if (!isMounted(file)) return;
  run(["umount", file], "release the node's mount namespace");
}

export function nsInode(file: string): number | undefined {
  try {
    return statSync(file).ino;
  } catch {
    return undefined;
  }
}

/** PIDs whose mount namespace is the one bound to `file` (containerd, the kubelet, shims). */
export function processesInMountNs(file: string): number[] {
  if (!isMounted(file)) return [];
  const ino = nsInode(file);
  if (ino === undefined) return [];
  // Never "every process of the machine": refuse if the file somehow is our (the machine's) namespace.
  if (readlinkSync("/proc/self/ns/mnt") === `mnt:[${ino}]`)
    throw new RealNodeError(`${file} is the machine's own mount namespace; refusing to end its processes`);
  const want = `mnt:[${ino}]`;
  const out: number[] = [];
  for (const ent of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(ent) || Number(ent) === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${ent}/ns/mnt`) === want) out.push(Number(ent));
    } catch {
      // gone
    }
  }
  return out;
}

// ---- cgroups ---------------------------------------------------------------------------------

const CGROUP_FS = "/sys/fs/cgroup";

/** The cgroup v1 hierarchies mounted under /sys/fs/cgroup (plus the v2 one, for cleaning up only). */
function hierarchies(includeUnified: boolean): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    const sep = f.indexOf("-");
    if (sep < 0) continue;
    const fstype = f[sep + 1];
    const mp = f[4];
    if (!mp?.startsWith(`${CGROUP_FS}/`)) continue;
    if (fstype === "cgroup" || (includeUnified && fstype === "cgroup2")) out.push(mp);
  }
  return out;
}

export function validCgroupRoot(root: string): string {
  if (!/^\/[a-z][a-z0-9-]{0,62}$/.test(root)) throw new RealNodeError(`cgroup root "${root}" is not a lab name`);
  return root;
}

/** The kubelet requires its cgroupRoot to exist in every hierarchy; cpuset needs cpus and mems. */
export function makeCgroupRoot(root: string): void {
  validCgroupRoot(root);
  for (const h of hierarchies(false)) {
    const dir = join(h, root);
    if (!existsSync(dir)) mkdirSync(dir);
    if (h.endsWith("/cpuset")) {
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        if (readFileSync(join(dir, f), "utf8").trim() === "")
          writeFileSync(join(dir, f), readFileSync(join(h, f), "utf8").trim());
      }
    }
  }
}

function walkDirs(dir: string): string[] {
  const out: string[] = [];
  let ents: Dirent[];
  try {
    ents = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of ents) if (e.isDirectory()) out.push(...walkDirs(join(dir, e.name)));
  out.push(dir);
  return out;
}

/** Every PID in the node's cgroup tree (its pods' containers), in any hierarchy. */
export function processesInCgroupRoot(root: string): number[] {
  validCgroupRoot(root);
  const pids = new Set<number>();
  for (const h of hierarchies(true)) {
    for (const d of walkDirs(join(h, root))) {
      try {
        for (const l of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n")) if (l) pids.add(Number(l));
      } catch {
        // gone
      }
    }
  }
  pids.delete(process.pid);
  return [...pids];
}

/** Removes the node's cgroup tree in every hierarchy, deepest first; returns what is still there. */
export function removeCgroupRoot(root: string): string[] {
  validCgroupRoot(root);
  const left: string[] = [];
  for (const h of hierarchies(true)) {
    for (const d of walkDirs(join(h, root))) {
      try {
        rmdirSync(d);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") left.push(d);
      }
    }
  }
  return left;
}
