// podman 4.3 with its CNI backend as a real CNI client, isolated from the machine's own podman:
// its containers.conf (CONTAINERS_CONF), storage.conf (CONTAINERS_STORAGE_CONF), --root,
// --runroot, --tmpdir, file locks and event log all live in one temp dir, and it runs in a test
// "host" netns via `nsenter --net` (PLATFORM.md: `ip netns exec` remounts /sys and breaks runc).
// The one shared place left is libcni's result cache (/var/lib/cni/results), which podman does
// not let us move; close() removes the entries of the networks this sandbox used.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  copyFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, runStatus } from "../kernel/exec.js";

export interface PodmanOptions {
  /** The netns podman (and so the CNI plugins it runs) lives in. */
  hostNetns: string;
  /** The CNI conf dir podman reads networks from (e.g. install-cni's --conf-dir). */
  netConfDir: string;
  /** Where podman looks for CNI plugin executables, in order. */
  pluginDirs: string[];
}

export interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

const BUSYBOX = "/bin/busybox";
export const BUSYBOX_IMAGE = "localhost/weft-e2e-busybox:latest";

/** Why podman cannot run here, or undefined when it can. */
export async function podmanSkipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "podman e2e needs root";
  const path = (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":");
  for (const [bin, pkg] of [
    ["podman", "podman"],
    ["runc", "runc"],
    ["conmon", "conmon"],
    ["nsenter", "util-linux"],
  ] as const) {
    if (!path.some((d) => existsSync(join(d, bin)))) return `${bin} is not installed (Debian package ${pkg})`;
  }
  if (!existsSync(BUSYBOX)) return "busybox-static is not installed (needed for the container image)";
  const v = await runStatus(["podman", "--version"]);
  if (v.code !== 0) return `podman does not run: ${v.stderr.trim()}`;
  return undefined;
}

export class PodmanSandbox {
  readonly work: string;
  private readonly confFile: string;
  private readonly storageFile: string;
  private readonly root: string;
  private readonly runroot: string;
  private readonly tmp: string;
  /** Container netns paths podman made, removed at close() in case podman could not. */
  private readonly sandboxes = new Set<string>();
  private readonly networks = new Set<string>();

  private constructor(readonly o: PodmanOptions) {
    this.work = mkdtempSync(join(tmpdir(), "weft-podman-"));
    this.confFile = join(this.work, "containers.conf");
    this.storageFile = join(this.work, "storage.conf");
    this.root = join(this.work, "root");
    this.runroot = join(this.work, "runroot");
    this.tmp = join(this.work, "tmp");
  }

  static create(o: PodmanOptions): PodmanSandbox {
    const s = new PodmanSandbox(o);
    mkdirSync(s.tmp, { recursive: true });
    const q = (v: string) => JSON.stringify(v); // TOML basic strings accept JSON string syntax
    writeFileSync(
      s.confFile,
      [
        "[containers]",
        'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]',
        "[network]",
        'network_backend = "cni"',
        `cni_plugin_dirs = [${o.pluginDirs.map(q).join(", ")}]`,
        `network_config_dir = ${q(o.netConfDir)}`,
        "[engine]",
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = ${q(join(s.work, "events.log"))}`,
        'runtime = "runc"',
        // File locks under tmp_dir: the default SHM segment (/libpod_lock) is shared with the
        // machine's own podman.
        'lock_type = "file"',
        `tmp_dir = ${q(s.tmp)}`,
        `static_dir = ${q(join(s.root, "libpod"))}`,
        `volume_path = ${q(join(s.root, "volumes"))}`,
        "",
      ].join("\n"),
    );
    writeFileSync(
      s.storageFile,
      ["[storage]", 'driver = "vfs"', `runroot = ${q(s.runroot)}`, `graphroot = ${q(s.root)}`, ""].join("\n"),
    );
    return s;
  }

  /** Runs `podman ARGS` with this sandbox's configuration, inside the host netns. */
  podman(args: string[], input?: string): Promise<Exec> {
    const argv = [
      "env",
      `CONTAINERS_CONF=${this.confFile}`,
      `CONTAINERS_STORAGE_CONF=${this.storageFile}`,
      "podman",
      "--root",
      this.root,
      "--runroot",
      this.runroot,
      "--tmpdir",
      this.tmp,
      "--runtime",
      "runc",
      "--cgroup-manager",
      "cgroupfs",
      "--events-backend",
      "file",
      "--network-config-dir",
      this.o.netConfDir,
      "--storage-driver",
      "vfs",
      ...args,
    ];
    return runStatus(argv, { netns: this.o.hostNetns, ...(input !== undefined ? { input } : {}) });
  }

  /** Like podman() but throws with podman's own message unless it exits 0; returns stdout. */
  async ok(args: string[]): Promise<string> {
    const r = await this.podman(args);
    if (r.code !== 0) throw new Error(`podman ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** Imports a busybox image: busybox-static plus a link per applet (no registry needed). */
  async importBusybox(): Promise<string> {
    const img = join(this.work, "image");
    mkdirSync(join(img, "bin"), { recursive: true });
    for (const d of ["etc", "proc", "sys", "dev", "tmp", "www"]) mkdirSync(join(img, d), { recursive: true });
    copyFileSync(BUSYBOX, join(img, "bin", "busybox"));
    const applets = (await run([BUSYBOX, "--list"]))
      .split("\n")
      .filter((a) => /^[A-Za-z0-9_.[-]+$/.test(a) && a !== "busybox");
    for (const a of applets) if (!existsSync(join(img, "bin", a))) symlinkSync("busybox", join(img, "bin", a));
    writeFileSync(join(img, "www", "index.html"), "hello from a weft pod\n");
    const tar = join(this.work, "busybox.tar");
    await run(["tar", "-C", img, "-cf", tar, "."]);
    await this.ok(["import", "--change", "CMD=/bin/sh", tar, BUSYBOX_IMAGE]);
    rmSync(img, { recursive: true, force: true });
    return BUSYBOX_IMAGE;
  }

  /** Starts a detached container on NETWORK running CMD; returns its id. */
  async runDetached(name: string, network: string, cmd: string[], extra: string[] = []): Promise<string> {
    this.networks.add(network);
    const r = await this.podman(["run", "-d", "--name", name, "--network", network, ...extra, BUSYBOX_IMAGE, ...cmd]);
    const id = r.stdout.trim();
    // Record the sandbox even when the run failed half-way, so close() can remove it.
    const sk = await this.podman(["inspect", name, "--format", "{{.NetworkSettings.SandboxKey}}"]);
    if (sk.code === 0 && sk.stdout.trim().startsWith("/run/netns/")) this.sandboxes.add(sk.stdout.trim());
    if (r.code !== 0) throw new Error(`podman run ${name} exited ${r.code}: ${r.stderr.trim()}`);
    return id;
  }

  /** The container's address on NETWORK as podman reports it (what the CNI result said). */
  async address(name: string, network: string): Promise<string> {
    const out = await this.ok(["inspect", name, "--format", "{{json .NetworkSettings.Networks}}"]);
    const nets = JSON.parse(out) as Record<string, { IPAddress?: string }>;
    const ip = nets[network]?.IPAddress;
    if (!ip) throw new Error(`podman reports no address for ${name} on ${network}: ${out}`);
    return ip;
  }

  exec(name: string, cmd: string[]): Promise<Exec> {
    return this.podman(["exec", name, ...cmd]);
  }

  /** Removes every container, then the whole sandbox; safe to call after any failure. */
  async close(): Promise<void> {
    await this.podman(["rm", "--all", "--force", "--time", "0"]).catch(() => undefined);
    // Anything podman left mounted under our dirs (shm of a container it failed to remove).
    const mounts = readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[1])
      .filter((m) => m?.startsWith(this.work + "/"));
    for (const m of mounts.sort().reverse()) await runStatus(["umount", "-l", m]);
    for (const ns of this.sandboxes) {
      if (existsSync(ns)) await runStatus(["ip", "netns", "del", ns.slice("/run/netns/".length)]);
    }
    const cache = "/var/lib/cni/results";
    if (existsSync(cache)) {
      for (const f of readdirSync(cache)) {
        if ([...this.networks].some((n) => f.startsWith(`${n}-`))) rmSync(join(cache, f), { force: true });
      }
    }
    rmSync(this.work, { recursive: true, force: true });
  }
}
