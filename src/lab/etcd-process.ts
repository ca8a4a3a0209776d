// Runs real etcd servers (Debian's /usr/bin/etcd) on loopback for tests and the lab: random free
// ports, a temporary data directory, 1 or 3 members. Members can be killed and restarted by PID
// (same ports and data, so clients reconnect). Everything is removed on stop(), and also if the
// process exits without calling it.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { dirs, hookExit, running } from "./child-reaper.js";
import { clientTls, etcdServerTlsArgs, makeEtcdCertificates, type EtcdCertificates } from "../store/etcd/certs.js";
import { etcdHealthy } from "../store/etcd/health.js";

export const ETCD_BINARY = "/usr/bin/etcd";

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** PID while running, else undefined. */
  readonly pid: number | undefined;
  /** Starts (or restarts) the member and waits until it answers /health (needs quorum). */
  start(): Promise<void>;
  /** Kills the member by PID (SIGKILL: a crash) and waits for it to exit. */
  kill(): Promise<void>;
}

export interface EtcdCluster {
  readonly endpoints: string[];
  /** With options.tls: the CA, server and client certificates (endpoints are https://). */
  readonly tls?: EtcdCertificates;
  readonly members: EtcdMember[];
  /** Kills every member and removes the data directories. Idempotent. */
  stop(): Promise<void>;
}

export interface StartEtcdOptions {
  members?: 1 | 3;
  binary?: string;
  /** Parent of the temporary directory. Default: the OS temp dir. */
  baseDir?: string;
  /** How long to wait for the cluster to become healthy. Default 20 s. */
  readyTimeoutMs?: number;
  /**
   * Outlive this process (for the lab): members run detached in their own process group, log to
   * DATADIR.log, and are NOT killed or removed when this process exits. Whoever started them ends
   * them later by PID (members[i].pid) and removes baseDir. Default false (tests: always cleaned up).
   */
  persistent?: boolean;
  /** Client-certificate TLS on the client URLs (--client-cert-auth); certificates made in the temporary directory. */
  tls?: boolean;
}

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

class Member implements EtcdMember {
  private child: ChildProcess | undefined;
  private stderr = "";

  constructor(
    readonly name: string,
    readonly clientUrl: string,
    readonly peerUrl: string,
    readonly dataDir: string,
    private readonly argv: string[],
    private readonly binary: string,
    private readonly readyTimeoutMs: number,
    private readonly persistent: boolean,
    private readonly healthy: () => Promise<boolean>,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  spawn(): void {
    if (this.child) return;
    this.stderr = "";
    let child: ChildProcess;
    if (this.persistent) {
      const log = openSync(`${this.dataDir}.log`, "a");
      child = spawn(this.binary, this.argv, { stdio: ["ignore", log, log], detached: true });
      closeSync(log);
      child.unref();
    } else {
      child = spawn(this.binary, this.argv, { stdio: ["ignore", "ignore", "pipe"] });
      child.stderr?.on("data", (d: Buffer) => {
        this.stderr = (this.stderr + d.toString()).slice(-4000);
      });
      running.add(child);
    }
    child.once("exit", () => {
      running.delete(child);
      if (this.child === child) this.child = undefined;
    });
    child.once("error", () => undefined); // reported by waitReady as "exited"
    this.child = child;
  }

  async waitReady(): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    while (Date.now() < deadline) {
      if (!this.child)
        throw new Error(
          `etcd member ${this.name} exited during start-up: ${this.stderr.trim().split("\n").slice(-3).join(" | ")}`,
        );
      if (await this.healthy()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(
      `etcd member ${this.name} (${this.clientUrl}) was not healthy after ${this.readyTimeoutMs} ms: ${this.stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  }

  async start(): Promise<void> {
    this.spawn();
    await this.waitReady();
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    const exited = new Promise((r) => child.once("exit", r));
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
    await exited;
  }
}

export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const persistent = options.persistent ?? false;
  if (!persistent) hookExit();
  const n = options.members ?? 1;
  const binary = options.binary ?? ETCD_BINARY;
  const base = mkdtempSync(join(options.baseDir ?? tmpdir(), "weft-etcd-"));
  if (!persistent) dirs.add(base);
  const ports = await freePorts(2 * n);
  const tls = options.tls ? makeEtcdCertificates(join(base, "tls")) : undefined;
  const scheme = tls ? "https" : "http";
  const token = `weft-${randomBytes(6).toString("hex")}`;
  const specs = Array.from({ length: n }, (_, i) => ({
    name: `m${i}`,
    clientUrl: `${scheme}://127.0.0.1:${ports[2 * i]}`,
    peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
    dataDir: join(base, `m${i}`),
  }));
  const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(",");
  const members = specs.map(
    (s) =>
      new Member(
        s.name,
        s.clientUrl,
        s.peerUrl,
        s.dataDir,
        [
          "--name",
          s.name,
          "--data-dir",
          s.dataDir,
          "--listen-client-urls",
          s.clientUrl,
          "--advertise-client-urls",
          s.clientUrl,
          "--listen-peer-urls",
          s.peerUrl,
          "--initial-advertise-peer-urls",
          s.peerUrl,
          "--initial-cluster",
          initialCluster,
          "--initial-cluster-state",
          "new",
          "--initial-cluster-token",
          token,
          "--heartbeat-interval",
          "10",
          "--election-timeout",
          "100",
          "--logger",
          "zap",
          "--log-level",
          "error",
          ...(tls ? etcdServerTlsArgs(tls) : []),
        ],
        binary,
        options.readyTimeoutMs ?? 20_000,
        persistent,
        () => etcdHealthy(s.clientUrl, tls && clientTls(tls)),
      ),
  );
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(members.map((m) => m.kill()));
    rmSync(base, { recursive: true, force: true });
    dirs.delete(base);
  };
  try {
    // All members must be up before any of them can elect a leader and report healthy.
    for (const m of members) m.spawn();
    await Promise.all(members.map((m) => m.waitReady()));
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoints: specs.map((s) => s.clientUrl), ...(tls ? { tls } : {}), members, stop };
}
