// Runs a real kube-apiserver (v1.20.2, built from Debian's source package by
// scripts/kube-apiserver.sh) over a real etcd on loopback, for tests and the lab. What 1.20 needs
// (PLATFORM.md): secure port only, a self-signed serving certificate, a static token in group
// system:masters, RBAC, service-account keys + issuer, a service CIDR, and no ServiceAccount
// admission (no controller-manager creates service accounts). Writes a kubeconfig (token + CA).
//
// Real-node mode (`realNodes: true`, for the lab's real kubelets, controller-manager and scheduler):
// ServiceAccount admission stays ON (pods get their token), NodeRestriction on, --authorization-mode=Node,RBAC,
// --kubelet-preferred-address-types=InternalIP,Hostname (IPv6DualStack is on in both modes). The
// result then also names the files those components need: `saKeyFile` (kube-controller-manager
// --service-account-private-key-file, for its token controller), `caFile` (the serving
// certificate, self-signed: --root-ca-file and every kubeconfig's CA). `tokens` adds static tokens
// to tokens.csv before start, each returned as a kubeconfig file in `kubeconfigs[name]`, e.g.
//   tokens: [{ name: "node-1", user: "system:node:node-1", groups: ["system:nodes"] },
//            { name: "controller-manager", user: "weft-controller-manager", groups: ["system:masters"] }]
// `bindAddress` (default 127.0.0.1) is where it listens (and a SAN of its certificate): kubelets in
// other network namespaces need an address they can reach.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { request } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { stringify } from "yaml";
import type { EtcdTlsFiles } from "../store/etcd/config.js";
import { startEtcd, type EtcdCluster } from "./etcd-process.js";
import { dirs, hookExit, running } from "./child-reaper.js";

/** Where scripts/kube-apiserver.sh caches the binary ($WEFT_CACHE, default /var/cache/weft). */
export function kubeApiserverBinary(): string {
  return join(process.env.WEFT_CACHE || "/var/cache/weft", "kube-apiserver");
}

export interface StartApiserverOptions {
  /** etcd client URLs to use. Absent: a 1-member etcd is started (and stopped) with the apiserver. */
  etcdServers?: string[];
  /** TLS to etcdServers (https://): --etcd-cafile, --etcd-certfile, --etcd-keyfile. */
  etcdTls?: EtcdTlsFiles;
  /** Key prefix in etcd (several apiservers may share one etcd). Default "/registry". */
  etcdPrefix?: string;
  binary?: string;
  /** Parent of the working directory (certificates, token, kubeconfig, logs). Default: OS temp dir. */
  baseDir?: string;
  /** Default 60 s (ready in ~4 s on these machines). */
  readyTimeoutMs?: number;
  /** Default "10.96.0.0/16". */
  serviceClusterIPRange?: string;
  /**
   * Outlive this process (for the lab): the apiserver (and an etcd started for it) run detached,
   * log to DIR/apiserver.log, and are NOT ended when this process exits. Whoever started them ends
   * them later by PID (`pids`) and removes `dir`. Default false (tests: always cleaned up).
   */
  persistent?: boolean;
  /**
   * Real-node mode (see the top of this file): ServiceAccount admission on, Node,RBAC authorization,
   * kubelet address types. Default false: exactly the test setup (no ServiceAccount admission, RBAC).
   */
  realNodes?: boolean;
  /** Extra static tokens written to tokens.csv before start; each gets a kubeconfig (`kubeconfigs`). */
  tokens?: StaticToken[];
  /** Address to listen on and advertise (also in the certificate). Default 127.0.0.1. */
  bindAddress?: string;
}

/** A static bearer token (tokens.csv) for a user in groups, e.g. a kubelet's system:node:NAME in system:nodes. */
export interface StaticToken {
  /** Key in `kubeconfigs` and the kubeconfig's file name (kubeconfig-NAME); [a-z0-9-]. */
  name: string;
  user: string;
  groups: string[];
}

export interface KubeApiserver {
  /** https://127.0.0.1:PORT */
  readonly url: string;
  /** A kubeconfig file (bearer token in group system:masters, serving certificate as CA). */
  readonly kubeconfig: string;
  readonly token: string;
  /** Working directory: serving.crt/key, sa.key/pub, tokens.csv, kubeconfig, apiserver.log. */
  readonly dir: string;
  /** The CA to trust (the self-signed serving certificate): kube-controller-manager --root-ca-file. */
  readonly caFile: string;
  /** The service-account signing key: kube-controller-manager --service-account-private-key-file. */
  readonly saKeyFile: string;
  /** Kubeconfig files of the extra `tokens`, by name. */
  readonly kubeconfigs: Readonly<Record<string, string>>;
  readonly etcdServers: string[];
  /** The apiserver's PID while it runs. */
  readonly pid: number | undefined;
  /** apiserver PID first, then those of the etcd started for it (if any): what to end, in order. */
  readonly pids: number[];
  /** Kills the apiserver by PID (SIGKILL: a crash); etcd and the working directory stay. */
  kill(): Promise<void>;
  /** Starts it again after kill() (same URL, certificates, token and etcd) and waits until ready. */
  start(): Promise<void>;
  /** Kills the apiserver (and its own etcd) by PID and removes the working directory. Idempotent. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function openssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.status !== 0)
    throw new Error(
      `openssl ${args[0]} failed (is the openssl package installed?): ${(r.stderr || String(r.error)).trim()}`,
    );
}

/**
 * Serving certificate for 127.0.0.1 (and bindAddress: serving.crt/key), service-account keys
 * (sa.key/pub), tokens.csv with the admin token; returns the token.
 */
export function makeApiserverCredentials(dir: string, bindAddress = "127.0.0.1"): string {
  openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "365",
    "-subj",
    "/CN=weft-kube-apiserver",
    "-addext",
    `subjectAltName=IP:127.0.0.1,DNS:localhost${bindAddress !== "127.0.0.1" ? `,IP:${bindAddress}` : ""},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc`,
    "-keyout",
    join(dir, "serving.key"),
    "-out",
    join(dir, "serving.crt"),
  ]);
  openssl(["genrsa", "-out", join(dir, "sa.key"), "2048"]);
  openssl(["rsa", "-in", join(dir, "sa.key"), "-pubout", "-out", join(dir, "sa.pub")]);
  const token = randomBytes(24).toString("hex");
  // token,user,uid,"group1,group2"
  writeFileSync(join(dir, "tokens.csv"), `${token},weft-admin,weft-admin,"system:masters"\n`, { mode: 0o600 });
  return token;
}

/** Appends static tokens to dir/tokens.csv (read by the apiserver at start); returns them by name. */
export function addStaticTokens(dir: string, extra: readonly StaticToken[]): Record<string, string> {
  const lines: string[] = [];
  const tokens: Record<string, string> = {};
  for (const t of extra) {
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(t.name))
      throw new Error(`static token name ${JSON.stringify(t.name)}: use [a-z0-9-]`);
    for (const v of [t.user, ...t.groups])
      if (!/^[A-Za-z0-9:._@-]+$/.test(v))
        throw new Error(
          `static token ${t.name}: user or group ${JSON.stringify(v)} has characters tokens.csv cannot hold`,
        );
    if (tokens[t.name]) throw new Error(`static token ${t.name} given twice`);
    tokens[t.name] = randomBytes(24).toString("hex");
    lines.push(`${tokens[t.name]},${t.user},${t.user},"${t.groups.join(",")}"`);
  }
  if (lines.length) appendFileSync(join(dir, "tokens.csv"), lines.join("\n") + "\n");
  return tokens;
}

/**
 * The flags for a kube-apiserver on 127.0.0.1:port using the files makeApiserverCredentials() wrote
 * in dir (for a launcher that restarts it from another process, like the lab).
 */
export function kubeApiserverArgs(o: {
  dir: string;
  port: number;
  etcdServers: readonly string[];
  etcdTls?: EtcdTlsFiles;
  etcdPrefix?: string;
  serviceClusterIPRange?: string;
  /** Real-node mode: see StartApiserverOptions.realNodes. */
  realNodes?: boolean;
  bindAddress?: string;
}): string[] {
  const dir = o.dir;
  const bind = o.bindAddress ?? "127.0.0.1";
  const t = o.etcdTls;
  return [
    "--etcd-servers",
    o.etcdServers.join(","),
    ...(t
      ? [
          "--etcd-cafile",
          t.caFile,
          ...(t.certFile && t.keyFile ? ["--etcd-certfile", t.certFile, "--etcd-keyfile", t.keyFile] : []),
        ]
      : []),
    "--etcd-prefix",
    o.etcdPrefix ?? "/registry",
    "--bind-address",
    bind,
    "--advertise-address",
    bind,
    "--secure-port",
    String(o.port),
    "--cert-dir",
    dir,
    "--tls-cert-file",
    join(dir, "serving.crt"),
    "--tls-private-key-file",
    join(dir, "serving.key"),
    "--token-auth-file",
    join(dir, "tokens.csv"),
    "--authorization-mode",
    o.realNodes ? "Node,RBAC" : "RBAC",
    "--service-account-key-file",
    join(dir, "sa.pub"),
    "--service-account-signing-key-file",
    join(dir, "sa.key"),
    "--service-account-issuer",
    "https://kubernetes.default.svc",
    "--service-cluster-ip-range",
    o.serviceClusterIPRange ?? "10.96.0.0/16",
    // Without a controller-manager nothing makes ServiceAccounts; real nodes have one (pods need tokens).
    ...(o.realNodes
      ? [
          "--kubelet-preferred-address-types",
          "InternalIP,Hostname",
          // A kubelet (system:node:NAME) writes only its own Node, Lease and pods' status.
          "--enable-admission-plugins",
          "NodeRestriction",
        ]
      : ["--disable-admission-plugins", "ServiceAccount"]),
    "--allow-privileged=true",
    // Without it 1.20 silently drops a Node's second podCIDR (the IPv6 one of a dual-stack node).
    "--feature-gates",
    "IPv6DualStack=true",
  ];
}

/** A kubeconfig for `url` with a bearer token, trusting `caFile`. */
export function writeKubeconfig(file: string, url: string, token: string, caFile: string, user = "weft-admin"): void {
  const cfg = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      { name: "weft", cluster: { server: url, "certificate-authority-data": readFileSync(caFile).toString("base64") } },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: "weft", context: { cluster: "weft", user } }],
    "current-context": "weft",
  };
  writeFileSync(file, stringify(cfg), { mode: 0o600 });
}

function readyz(url: string, ca: Buffer, token: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      `${url}/readyz`,
      { ca, headers: { authorization: `Bearer ${token}` }, timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

function tail(file: string, lines = 5): string {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-lines).join(" | ");
  } catch {
    return "(no log)";
  }
}

export async function startKubeApiserver(options: StartApiserverOptions = {}): Promise<KubeApiserver> {
  const persistent = options.persistent ?? false;
  const binary = options.binary ?? kubeApiserverBinary();
  if (!existsSync(binary)) {
    throw new Error(
      `${binary} is missing: build it once with \`bash scripts/kube-apiserver.sh\` (about 11 minutes; it caches the binary there)`,
    );
  }
  if (!persistent) hookExit();
  const dir = mkdtempSync(join(options.baseDir ?? tmpdir(), "weft-apiserver-"));
  if (!persistent) dirs.add(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  let etcd: EtcdCluster | undefined;
  let child: ChildProcess | undefined;
  let stopped = false;
  const alive = (c: ChildProcess | undefined): c is ChildProcess =>
    c?.pid !== undefined && c.exitCode === null && c.signalCode === null;
  const kill = async (): Promise<void> => {
    const c = child;
    if (alive(c)) {
      const exited = new Promise((r) => c.once("exit", r));
      try {
        process.kill(c.pid!, "SIGKILL");
      } catch {
        /* gone */
      }
      await exited;
    }
    if (c) running.delete(c);
  };
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await kill();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
  };

  try {
    if (!options.etcdServers) etcd = await startEtcd({ members: 1, persistent, baseDir: persistent ? dir : undefined });
    const etcdServers = options.etcdServers ?? etcd!.endpoints;
    const bind = options.bindAddress ?? "127.0.0.1";
    const token = makeApiserverCredentials(dir, bind);
    const extra = addStaticTokens(dir, options.tokens ?? []);
    const port = await freePort();
    const url = `https://${bind.includes(":") ? `[${bind}]` : bind}:${port}`;
    const kubeconfig = join(dir, "kubeconfig");
    writeKubeconfig(kubeconfig, url, token, join(dir, "serving.crt"));
    const kubeconfigs: Record<string, string> = {};
    for (const t of options.tokens ?? []) {
      kubeconfigs[t.name] = join(dir, `kubeconfig-${t.name}`);
      writeKubeconfig(kubeconfigs[t.name], url, extra[t.name], join(dir, "serving.crt"), t.user);
    }
    const argv = kubeApiserverArgs({
      dir,
      port,
      etcdServers,
      etcdTls: options.etcdTls,
      etcdPrefix: options.etcdPrefix,
      serviceClusterIPRange: options.serviceClusterIPRange,
      realNodes: options.realNodes,
      bindAddress: bind,
    });
    const logFile = join(dir, "apiserver.log");
    const ca = readFileSync(join(dir, "serving.crt"));
    const timeoutMs = options.readyTimeoutMs ?? 60_000;

    /** Starts the apiserver (again: same port, certificates and etcd) and waits for /readyz. */
    const start = async (): Promise<void> => {
      if (stopped) throw new Error(`the kube-apiserver in ${dir} was stopped for good`);
      if (alive(child)) return;
      const log = openSync(logFile, "a", 0o600);
      let c: ChildProcess;
      try {
        c = spawn(binary, argv, { cwd: dir, stdio: ["ignore", log, log], detached: persistent });
      } finally {
        closeSync(log);
      }
      child = c;
      c.once("error", () => undefined); // reported below as "exited"
      if (persistent) c.unref();
      else running.add(c);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (!alive(c)) throw new Error(`kube-apiserver exited during start-up: ${tail(logFile)}`);
        if (await readyz(url, ca, token)) return;
        if (Date.now() > deadline)
          throw new Error(`kube-apiserver (${url}) was not ready after ${timeoutMs} ms: ${tail(logFile)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await start();
    const etcdPids = (etcd?.members ?? []).map((m) => m.pid).filter((p): p is number => p !== undefined);
    return {
      url,
      kubeconfig,
      token,
      dir,
      caFile: join(dir, "serving.crt"),
      saKeyFile: join(dir, "sa.key"),
      kubeconfigs,
      etcdServers,
      get pid() {
        return alive(child) ? child.pid : undefined;
      },
      get pids() {
        return [...(alive(child) ? [child.pid!] : []), ...etcdPids];
      },
      kill,
      start,
      stop,
    };
  } catch (err) {
    // Keep the log for the message above, then clean up what was started.
    await stop();
    throw err;
  }
}
