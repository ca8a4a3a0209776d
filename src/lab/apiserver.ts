// The lab's kube-apiserver (--store kubernetes): Kubernetes v1.20.2 built from Debian's source
// package by scripts/kube-apiserver.sh, over the lab etcd (its own key prefix), on 127.0.0.1 with a
// self-signed serving certificate and a static admin token (PLATFORM.md lists what 1.20 needs).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { stringify } from "yaml";
import { freePort } from "./etcd.js";
import { isAlive, logTail, spawnDetached, type ProcRef } from "./procs.js";

export function apiserverBinary(): string {
  return join(process.env.WEFT_CACHE || "/var/cache/weft", "kube-apiserver");
}

export interface ApiserverPlan {
  dir: string;
  url: string;
  kubeconfig: string;
  proc?: ProcRef;
}

function openssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.trim()}`);
}

/** Keys, certificate, token and kubeconfig; kept if they exist (a restarted apiserver reuses them). */
export async function prepareApiserver(labDir: string): Promise<ApiserverPlan> {
  const dir = join(labDir, "apiserver");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const url = `https://127.0.0.1:${await freePort()}`;
  if (!existsSync(join(dir, "serving.crt"))) {
    openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", "/CN=weft-lab-apiserver",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout", join(dir, "serving.key"), "-out", join(dir, "serving.crt")]);
    openssl(["genrsa", "-out", join(dir, "sa.key"), "2048"]);
    openssl(["rsa", "-in", join(dir, "sa.key"), "-pubout", "-out", join(dir, "sa.pub")]);
    const token = randomBytes(24).toString("hex");
    writeFileSync(join(dir, "tokens.csv"), `${token},weft-lab-admin,weft-lab-admin,"system:masters"\n`, { mode: 0o600 });
  }
  const kubeconfig = join(labDir, "kubeconfig");
  writeKubeconfig(kubeconfig, url, dir);
  return { dir, url, kubeconfig };
}

function token(dir: string): string {
  return readFileSync(join(dir, "tokens.csv"), "utf8").split(",")[0];
}

function writeKubeconfig(file: string, url: string, dir: string): void {
  const ca = readFileSync(join(dir, "serving.crt")).toString("base64");
  const cfg = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "weft-lab", cluster: { server: url, "certificate-authority-data": ca } }],
    users: [{ name: "weft-lab-admin", user: { token: token(dir) } }],
    contexts: [{ name: "weft-lab", context: { cluster: "weft-lab", user: "weft-lab-admin" } }],
    "current-context": "weft-lab",
  };
  writeFileSync(file, stringify(cfg), { mode: 0o600 });
}

export function startApiserver(plan: ApiserverPlan, etcdUrls: readonly string[]): ApiserverPlan {
  if (isAlive(plan.proc)) return plan;
  const bin = apiserverBinary();
  if (!existsSync(bin)) throw new Error(`${bin} is not built: run \`bash scripts/kube-apiserver.sh\` once (about 11 minutes), then \`weft lab up --store kubernetes\` again`);
  const port = new URL(plan.url).port;
  const d = plan.dir;
  const proc = spawnDetached([
    bin,
    "--etcd-servers", etcdUrls.join(","),
    "--etcd-prefix", "/registry",
    "--bind-address", "127.0.0.1",
    "--advertise-address", "127.0.0.1",
    "--secure-port", port,
    "--cert-dir", d,
    "--tls-cert-file", join(d, "serving.crt"),
    "--tls-private-key-file", join(d, "serving.key"),
    "--token-auth-file", join(d, "tokens.csv"),
    "--authorization-mode", "RBAC",
    "--service-account-key-file", join(d, "sa.pub"),
    "--service-account-signing-key-file", join(d, "sa.key"),
    "--service-account-issuer", "https://kubernetes.default.svc",
    "--service-cluster-ip-range", "10.96.0.0/16",
    "--disable-admission-plugins", "ServiceAccount",
    "--allow-privileged=true",
  ], { cwd: d, log: join(d, "apiserver.log") });
  return { ...plan, proc };
}

function readyz(plan: ApiserverPlan): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${plan.url}/readyz`, {
      ca: readFileSync(join(plan.dir, "serving.crt")),
      headers: { authorization: `Bearer ${token(plan.dir)}` },
      timeout: 2000,
    }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

export async function waitApiserver(plan: ApiserverPlan, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (!isAlive(plan.proc)) throw new Error(`kube-apiserver exited: ${logTail(join(plan.dir, "apiserver.log"))}`);
    if (await readyz(plan)) return;
    if (Date.now() > until) throw new Error(`kube-apiserver not ready after ${timeoutMs} ms: ${logTail(join(plan.dir, "apiserver.log"))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
