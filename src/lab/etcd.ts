// The lab's etcd (Debian's etcd 3.4): 1 or 3 members on 127.0.0.1 (free ports), and each also
// on a unix socket in its directory so agents inside node namespaces (which have their own
// loopback) can reach it. etcd 3.4 makes "unixs://etcd.sock:0" relative to its working
// directory, as the file "etcd.sock:0"; clients use unixs:///ABS/DIR/etcd.sock:0.
// Client-certificate TLS everywhere by default (an open etcd on loopback would let any local user
// write the store that root agents act on): certificates in DIR/etcd/tls, keys 0600.
import { mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { EtcdTlsFiles } from "../store/etcd/config.js";
import { etcdServerTlsArgs, makeEtcdCertificates } from "../store/etcd/certs.js";
import { etcdHealthy } from "../store/etcd/health.js";
import type { EtcdMember, LabState } from "./state.js";
import { isAlive, logTail, spawnDetached } from "./procs.js";

export const ETCD_BIN = "/usr/bin/etcd";
const SOCKET_FILE = "etcd.sock:0";

/** A port the kernel says is free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export type LabEtcdTls = NonNullable<LabState["etcdTls"]>;

/** The lab etcd's CA, server and client certificates, made in DIR/etcd/tls. */
export function makeLabEtcdCertificates(dir: string): LabEtcdTls {
  const c = makeEtcdCertificates(join(dir, "etcd", "tls"), "weft-lab");
  return {
    caFile: c.caFile,
    serverCertFile: c.serverCertFile,
    serverKeyFile: c.serverKeyFile,
    clientCertFile: c.clientCertFile,
    clientKeyFile: c.clientKeyFile,
  };
}

/** What a client presents to the lab etcd (undefined: an older lab's plain etcd). */
export function labClientTls(tls: LabEtcdTls | undefined): EtcdTlsFiles | undefined {
  return tls && { caFile: tls.caFile, certFile: tls.clientCertFile, keyFile: tls.clientKeyFile };
}

/** Member records with fresh ports; nothing is started yet. With tls, every URL is https. */
export async function planMembers(dir: string, count: 1 | 3, tls = true): Promise<EtcdMember[]> {
  const scheme = tls ? "https" : "http";
  const used = new Set<number>();
  const port = async () => {
    for (;;) {
      const p = await freePort();
      if (!used.has(p)) {
        used.add(p);
        return p;
      }
    }
  };
  const out: EtcdMember[] = [];
  for (let i = 1; i <= count; i++) {
    const mdir = join(dir, "etcd", `m${i}`);
    out.push({
      name: `m${i}`,
      dir: mdir,
      clientUrl: `${scheme}://127.0.0.1:${await port()}`,
      peerUrl: `${scheme}://127.0.0.1:${await port()}`,
      socket: join(mdir, SOCKET_FILE),
    });
  }
  return out;
}

function memberArgv(m: EtcdMember, all: readonly EtcdMember[], tls: LabEtcdTls | undefined): string[] {
  const tuning =
    all.length === 1
      ? ["--heartbeat-interval", "10", "--election-timeout", "100"]
      : ["--heartbeat-interval", "50", "--election-timeout", "500"];
  return [
    ETCD_BIN,
    "--name",
    m.name,
    "--data-dir",
    join(m.dir, "data"),
    "--listen-client-urls",
    `${m.clientUrl},${tls ? "unixs" : "unix"}://${SOCKET_FILE}`,
    "--advertise-client-urls",
    m.clientUrl,
    "--listen-peer-urls",
    m.peerUrl,
    "--initial-advertise-peer-urls",
    m.peerUrl,
    "--initial-cluster",
    all.map((x) => `${x.name}=${x.peerUrl}`).join(","),
    "--initial-cluster-state",
    "new",
    "--initial-cluster-token",
    "weft-lab",
    "--snapshot-count",
    "10000",
    "--logger",
    "zap",
    "--log-level",
    "warn",
    ...tuning,
    ...(tls ? etcdServerTlsArgs(tls, true) : []),
  ];
}

/** Starts a member that is not running; returns it with its process recorded. */
export function startMember(m: EtcdMember, all: readonly EtcdMember[], tls: LabEtcdTls | undefined): EtcdMember {
  if (isAlive(m.proc)) return m;
  mkdirSync(m.dir, { recursive: true, mode: 0o700 });
  // A member that crashed leaves its socket file behind, and etcd refuses to bind over it.
  rmSync(m.socket, { force: true });
  const proc = spawnDetached(memberArgv(m, all, tls), { cwd: m.dir, log: join(m.dir, "etcd.log") });
  return { ...m, proc };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until every member reports healthy (a leader exists, it serves reads). */
export async function waitHealthy(
  members: readonly EtcdMember[],
  tls: LabEtcdTls | undefined,
  timeoutMs = 20_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (const m of members) {
    for (;;) {
      if (m.proc && !isAlive(m.proc))
        throw new Error(`etcd member ${m.name} exited: ${logTail(join(m.dir, "etcd.log"))}`);
      if (await etcdHealthy(m.clientUrl, labClientTls(tls))) break;
      if (Date.now() > until)
        throw new Error(`etcd member ${m.name} not healthy after ${timeoutMs} ms: ${logTail(join(m.dir, "etcd.log"))}`);
      await sleep(50);
    }
  }
}

/** Endpoints for clients on the machine's loopback (the CLI). */
export function tcpEndpoints(members: readonly EtcdMember[]): string[] {
  return members.map((m) => m.clientUrl);
}

/** Endpoints for clients in any namespace on this machine (agents in node namespaces). */
export function unixEndpoints(members: readonly EtcdMember[], tls: boolean): string[] {
  return members.map((m) => `${tls ? "unixs" : "unix"}://${m.socket}`);
}

/**
 * How weft clients on this machine reach the lab etcd: its unix sockets (any namespace; and with
 * TLS, grpc names the server "localhost", which the certificate carries, where an IP endpoint
 * would make Node warn about IP server names) and the client certificate.
 */
export function labEtcdConnection(st: Pick<LabState, "etcd" | "etcdTls">): { endpoints: string[]; tls?: EtcdTlsFiles } {
  const tls = labClientTls(st.etcdTls);
  return { endpoints: unixEndpoints(st.etcd, tls !== undefined), ...(tls ? { tls } : {}) };
}

/** The same as `weft agent` / `weft --store etcd` flags. */
export function labEtcdFlags(st: Pick<LabState, "etcd" | "etcdTls">): string[] {
  const c = labEtcdConnection(st);
  return [
    "--etcd-endpoints",
    c.endpoints.join(","),
    ...(c.tls
      ? ["--etcd-cafile", c.tls.caFile, "--etcd-certfile", c.tls.certFile!, "--etcd-keyfile", c.tls.keyFile!]
      : []),
  ];
}
