// A private containerd 1.6 (Debian) for tests, isolated from the machine's own:
//  - its root, state, socket, runc root and FIFOs live in one temp dir;
//  - it runs in a network namespace the test made and in a private mount namespace (held by a
//    `sleep` started with `unshare --mount --propagation private`), where a tmpfs covers /run
//    (shim sockets go to /run/containerd/s, fixed in containerd) and /var/lib/cni (libcni's
//    result cache), and the test's CNI conf and bin dirs are bind-mounted over /etc/cni/net.d,
//    /opt/cni/bin and /usr/lib/cni: `ctr run --cni` reads only those default places (go-cni's
//    WithDefaultConf), and nothing of this reaches the machine's own mount table;
//  - it and its shims are ended by PID; the mount namespace goes with its last process.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runStatus } from "../kernel/exec.js";

export interface ContainerdOptions {
  /** The network namespace containerd, its shims and `ctr` (so the CNI plugins) run in. */
  netns: string;
  /** Bind-mounted over /etc/cni/net.d for ctr (`ctr run --cni`). */
  cniConfDir?: string;
  /** Bind-mounted over /opt/cni/bin and /usr/lib/cni for ctr. */
  cniBinDir?: string;
}

export interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits for COND, polling; throws with WHAT after the deadline. */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function killAndWait(pid: number | undefined): Promise<void> {
  if (!pid || !alive(pid)) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  await until(`PID ${pid} to exit`, () => !alive(pid) || isZombie(pid), 10_000).catch(() => undefined);
}

function isZombie(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
}

export class ContainerdSandbox {
  readonly work: string;
  readonly socket: string;
  /** containerd namespace (unique: it also names the containers' cgroups). */
  readonly ns = `weft-test-${randomBytes(3).toString("hex")}`;
  private holder: ChildProcess | undefined;
  private daemon: ChildProcess | undefined;
  private daemonLog = "";
  private readonly children = new Set<ChildProcess>();

  private constructor(readonly o: ContainerdOptions) {
    this.work = mkdtempSync(join(tmpdir(), "weft-containerd-"));
    this.socket = join(this.work, "containerd.sock");
  }

  get mountNs(): string {
    return `/proc/${this.holder!.pid}/ns/mnt`;
  }

  /** Starts containerd and waits until it answers; cleans up and rethrows if it cannot. */
  static async start(o: ContainerdOptions): Promise<ContainerdSandbox> {
    const s = new ContainerdSandbox(o);
    try {
      await s.boot();
    } catch (e) {
      await s.close();
      throw e;
    }
    return s;
  }

  private async boot(): Promise<void> {
    const self = readlinkSync("/proc/self/ns/mnt");
    this.holder = spawn("unshare", ["--mount", "--propagation", "private", "--", "sleep", "infinity"], {
      stdio: "ignore",
    });
    const pid = this.holder.pid!;
    await until("the private mount namespace", () => {
      try {
        return readlinkSync(`/proc/${pid}/ns/mnt`) !== self;
      } catch {
        return false;
      }
    });
    // tmpfs over /run (containerd's fixed /run/containerd) and libcni's cache; the CNI dirs.
    await this.inMountNs(["mount", "-t", "tmpfs", "-o", "mode=0755", "weft-test-run", "/run"]);
    await this.inMountNs(["mount", "-t", "tmpfs", "-o", "mode=0755", "weft-test-cni", "/var/lib/cni"]);
    if (this.o.cniConfDir) await this.inMountNs(["mount", "--bind", this.o.cniConfDir, "/etc/cni/net.d"]);
    if (this.o.cniBinDir) {
      await this.inMountNs(["mount", "-t", "tmpfs", "-o", "mode=0755", "weft-test-opt", "/opt"]);
      await this.inMountNs(["mkdir", "-p", "/opt/cni/bin"]);
      await this.inMountNs(["mount", "--bind", this.o.cniBinDir, "/opt/cni/bin"]);
      await this.inMountNs(["mount", "--bind", this.o.cniBinDir, "/usr/lib/cni"]);
    }
    for (const d of ["root", "state", "runc", "fifo", "opt"]) mkdirSync(join(this.work, d));
    const q = (v: string) => JSON.stringify(v); // TOML basic strings accept JSON string syntax
    const config = join(this.work, "config.toml");
    writeFileSync(
      config,
      [
        "version = 2",
        `root = ${q(join(this.work, "root"))}`,
        `state = ${q(join(this.work, "state"))}`,
        // No CRI: this sandbox is driven by ctr; the CRI would also watch the CNI dirs.
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",',
        '  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
        "[grpc]",
        `  address = ${q(this.socket)}`,
        "[ttrpc]",
        `  address = ${q(this.socket + ".ttrpc")}`,
        "[debug]",
        `  address = ${q(join(this.work, "debug.sock"))}`,
        "[metrics]",
        '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = ${q(join(this.work, "opt"))}`,
        "",
      ].join("\n"),
    );
    this.daemon = spawn(
      "nsenter",
      [
        `--mount=${this.mountNs}`,
        `--net=${this.o.netns}`,
        "--",
        "containerd",
        "--config",
        config,
        "--log-level",
        "warn",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    this.daemon.stderr!.setEncoding("utf8").on("data", (d: string) => {
      this.daemonLog = (this.daemonLog + d).slice(-20_000);
    });
    const daemon = this.daemon;
    await until(
      "containerd to answer",
      async () => {
        if (daemon.exitCode !== null || daemon.signalCode !== null)
          throw new Error(`containerd exited (${daemon.exitCode ?? daemon.signalCode}): ${this.daemonLog.trim()}`);
        return existsSync(this.socket) && (await this.ctr(["version"])).code === 0;
      },
      30_000,
    );
  }

  /** What containerd logged (warnings and errors), for failure messages. */
  get log(): string {
    return this.daemonLog;
  }

  private async inMountNs(argv: string[]): Promise<void> {
    const r = await runStatus(["nsenter", `--mount=${this.mountNs}`, "--", ...argv]);
    if (r.code !== 0) throw new Error(`${argv.join(" ")} in the test mount namespace: ${r.stderr.trim()}`);
  }

  private ctrArgv(args: string[]): string[] {
    return [
      "nsenter",
      `--mount=${this.mountNs}`,
      `--net=${this.o.netns}`,
      "--",
      "ctr",
      "--address",
      this.socket,
      "--namespace",
      this.ns,
      ...args,
    ];
  }

  /** `ctr ARGS` against this containerd, in its namespaces. */
  ctr(args: string[], input?: string): Promise<Exec> {
    const [cmd, ...rest] = this.ctrArgv(args);
    return runStatus([cmd, ...rest], input === undefined ? {} : { input });
  }

  async ok(args: string[]): Promise<string> {
    const r = await this.ctr(args);
    if (r.code !== 0) throw new Error(`ctr ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** Options every `ctr run` here needs: runc's state and the FIFOs inside the sandbox. */
  get runFlags(): string[] {
    return ["--runc-root", join(this.work, "runc"), "--fifo-dir", join(this.work, "fifo")];
  }

  /** `ctr run --rm [EXTRA] IMAGE ID ARGV...`: runs to completion. */
  run(image: string, id: string, argv: string[], extra: string[] = []): Promise<Exec> {
    return this.ctr(["run", "--rm", ...this.runFlags, ...extra, image, id, ...argv]);
  }

  /**
   * Starts `ctr run` in the foreground as a child (ctr stays attached: with --cni it sets the
   * network up before the task starts and DELs it when the task exits). Resolves once the task runs.
   */
  async start(image: string, id: string, argv: string[], extra: string[] = []): Promise<ChildProcess> {
    const [cmd, ...rest] = this.ctrArgv(["run", "--rm", ...this.runFlags, ...extra, image, id, ...argv]);
    const child = spawn(cmd, rest, { stdio: ["ignore", "pipe", "pipe"] });
    this.children.add(child);
    let err = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
    child.stdout!.resume();
    await until(`task ${id} to run`, async () => {
      if (child.exitCode !== null) throw new Error(`ctr run ${id} exited ${child.exitCode}: ${err.trim()}`);
      const t = await this.ctr(["task", "ls"]);
      return new RegExp(`^${id}\\s+\\d+\\s+RUNNING`, "m").test(t.stdout);
    });
    return child;
  }

  /** Kills a task started with start() and waits until its ctr (and so the CNI DEL) is done. */
  async stop(id: string, child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
    let stderr = "";
    child.stderr!.on("data", (d: string) => (stderr += d));
    const done = new Promise<number | null>((r) => {
      if (child.exitCode !== null) r(child.exitCode);
      else child.on("exit", (c) => r(c));
    });
    await this.ctr(["task", "kill", "--signal", "SIGKILL", id]);
    const code = await done;
    this.children.delete(child);
    return { code, stderr };
  }

  /** The PID of a running task's init process (its /proc/PID/ns/net is the container's netns). */
  async taskPid(id: string): Promise<number> {
    const m = new RegExp(`^${id}\\s+(\\d+)\\s+`, "m").exec(await this.ok(["task", "ls"]));
    if (!m) throw new Error(`no task ${id}`);
    return Number(m[1]);
  }

  /** Stops every task and container, containerd and its shims (by PID), and removes the sandbox. */
  async close(): Promise<void> {
    if (this.daemon && this.daemon.exitCode === null) {
      const tasks = await this.ctr(["task", "ls", "-q"]);
      for (const id of tasks.stdout.split("\n").filter(Boolean)) {
        await this.ctr(["task", "kill", "--signal", "SIGKILL", id]);
        await this.ctr(["task", "rm", "--force", id]);
      }
      for (const c of this.children) {
        await new Promise<void>((r) => (c.exitCode !== null ? r() : c.once("exit", () => r())));
      }
      const cs = await this.ctr(["container", "ls", "-q"]);
      for (const id of cs.stdout.split("\n").filter(Boolean)) await this.ctr(["container", "rm", id]);
    }
    for (const c of this.children) await killAndWait(c.pid);
    await killAndWait(this.daemon?.pid);
    // Shims outlive containerd (they are re-parented): ours are the ones given our socket.
    for (const pid of this.shimPids()) await killAndWait(pid);
    await killAndWait(this.holder?.pid);
    // The containers' cgroups were <controller>/<our namespace>/<id>; runc removed the leaves.
    for (const ctl of existsSync("/sys/fs/cgroup") ? readdirSync("/sys/fs/cgroup") : []) {
      const d = join("/sys/fs/cgroup", ctl, this.ns);
      if (existsSync(d)) {
        try {
          rmdirSync(d);
        } catch {
          // not empty or not ours to remove: leave it
        }
      }
    }
    rmSync(this.work, { recursive: true, force: true });
  }

  /** containerd-shim-runc-v2 processes started for this containerd (their -address is our socket). */
  shimPids(): number[] {
    const out: number[] = [];
    for (const e of readdirSync("/proc")) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
        if (argv[0]?.endsWith("containerd-shim-runc-v2") && argv.includes(this.socket)) out.push(Number(e));
      } catch {
        // gone
      }
    }
    return out;
  }
}
