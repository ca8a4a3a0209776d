// A secured etcd, as kubeadm runs it: client-certificate TLS, and etcd's own users (auth enable).
// Real etcd 3.4 processes on loopback, started here and killed by PID. What users check: the store
// works with the right credentials, is refused without them or with wrong ones (and says which),
// and a half-given configuration is refused before anything is dialled.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { inspect as utilInspect } from "node:util";
import { runStatus } from "../../kernel/exec.js";
import { isStoreError } from "../errors.js";
import { openStore, type StoreConfig } from "../index.js";
import { etcdConnection } from "./config.js";
import { clientTls, makeEtcdCertificates } from "./certs.js";
import { ETCD_BINARY, startEtcd, type EtcdCluster } from "../../lab/etcd-process.js";

const skip = existsSync(ETCD_BINARY) ? false : `${ETCD_BINARY} is missing (Debian package etcd-server)`;
const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "cli", "main.js");
const weft = (args: string[], env: Record<string, string> = {}) =>
  runStatus(["env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, CLI, ...args]);

/** The store's error for one read, or undefined when it worked. */
async function readError(config: StoreConfig): Promise<Error | undefined> {
  const s = openStore({ ...config, requestTimeoutMs: 1500 } as StoreConfig);
  try {
    await s.getClusterSettings();
    return undefined;
  } catch (e) {
    return e as Error;
  } finally {
    await s.close();
  }
}

describe("etcd with client-certificate TLS", { skip }, () => {
  let etcd: EtcdCluster;
  let scratch: string;
  before(async () => {
    etcd = await startEtcd({ members: 1, tls: true });
    scratch = mkdtempSync(join(tmpdir(), "weft-etcd-tls-"));
  });
  after(async () => {
    await etcd?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  test("with CA, certificate and key the store works; keys are 0600", async () => {
    const s = openStore({ kind: "etcd", endpoints: etcd.endpoints, tls: clientTls(etcd.tls!), prefix: "/tls-ok" });
    try {
      await s.initCluster({ clusterCIDRs: ["10.244.0.0/16"], backend: "vxlan" });
      await s.registerNode({ name: "n1", addresses: ["192.0.2.1"] }, { ttlSeconds: 5 });
      assert.deepEqual(
        (await s.listNodes()).map((n) => n.name),
        ["n1"],
      );
    } finally {
      await s.close();
    }
    for (const k of [etcd.tls!.clientKeyFile, etcd.tls!.serverKeyFile]) {
      const st = spawnSync("stat", ["-c", "%a", k], { encoding: "utf8" });
      assert.equal(st.stdout.trim(), "600", k);
    }
  });

  test("a client without a certificate, with one from another CA, or speaking plain HTTP is refused", async () => {
    const noCert = await readError({ kind: "etcd", endpoints: etcd.endpoints, tls: { caFile: etcd.tls!.caFile } });
    assert.ok(noCert && isStoreError(noCert, "Unavailable"), `no client certificate: ${noCert?.message}`);
    assert.match(noCert.message, /--etcd-cafile\/--etcd-certfile\/--etcd-keyfile/);

    const other = makeEtcdCertificates(join(scratch, "other"));
    const wrongCa = await readError({
      kind: "etcd",
      endpoints: etcd.endpoints,
      tls: { caFile: etcd.tls!.caFile, certFile: other.clientCertFile, keyFile: other.clientKeyFile },
    });
    assert.ok(wrongCa && isStoreError(wrongCa, "Unavailable"), `certificate of another CA: ${wrongCa?.message}`);

    const plain = await readError({ kind: "etcd", endpoints: etcd.endpoints.map((u) => u.replace("https:", "http:")) });
    assert.ok(plain && isStoreError(plain, "Unavailable"), `plain HTTP: ${plain?.message}`);
  });

  test("the CLI takes --etcd-cafile/--etcd-certfile/--etcd-keyfile, and refuses an https endpoint without a CA", async () => {
    const t = etcd.tls!;
    const base = ["--store", "etcd", "--etcd-endpoints", etcd.endpoints[0]];
    const init = await weft([
      "cluster",
      "init",
      "--cluster-cidr",
      "10.245.0.0/16",
      "--backend",
      "vxlan",
      ...base,
      "--etcd-cafile",
      t.caFile,
      "--etcd-certfile",
      t.clientCertFile,
      "--etcd-keyfile",
      t.clientKeyFile,
    ]);
    assert.equal(init.code, 0, init.stderr);

    const noCa = await weft(["status", ...base]);
    assert.equal(noCa.code, 2, noCa.stderr);
    assert.match(noCa.stderr, /is a TLS endpoint but no CA was given: add --etcd-cafile FILE/);

    const noKey = await weft(["status", ...base, "--etcd-cafile", t.caFile, "--etcd-certfile", t.clientCertFile]);
    assert.equal(noKey.code, 2, noKey.stderr);
    assert.match(noKey.stderr, /--etcd-certfile .* was given without its key: add --etcd-keyfile FILE/);

    const plainWithCa = await weft([
      "status",
      "--store",
      "etcd",
      "--etcd-endpoints",
      "http://127.0.0.1:2379",
      "--etcd-cafile",
      t.caFile,
    ]);
    assert.equal(plainWithCa.code, 2, plainWithCa.stderr);
    assert.match(plainWithCa.stderr, /--etcd-cafile need TLS endpoints: write --etcd-endpoints as https:\/\//);

    const missing = await weft(["status", ...base, "--etcd-cafile", join(scratch, "nope.crt")]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /--etcd-cafile .*nope\.crt: cannot read it \(ENOENT\)/);
  });
});

function etcdctl(endpoint: string, args: string[]): void {
  const r = spawnSync("etcdctl", ["--endpoints", endpoint, ...args], {
    encoding: "utf8",
    env: { ...process.env, ETCDCTL_API: "3" },
    timeout: 20_000,
  });
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
}

describe("etcd with username and password (etcd auth enable)", { skip }, () => {
  let etcd: EtcdCluster;
  let dir: string;
  const password = "s3cret-Pa55-" + Math.random().toString(36).slice(2);
  before(async () => {
    etcd = await startEtcd({ members: 1 });
    dir = mkdtempSync(join(tmpdir(), "weft-etcd-auth-"));
    etcdctl(etcd.endpoints[0], ["user", "add", `root:${password}`]);
    etcdctl(etcd.endpoints[0], ["auth", "enable"]);
  });
  after(async () => {
    await etcd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the right user works; none, or a wrong password, is refused and says which", async () => {
    const good = etcdConnection(etcd.endpoints, { username: "root" }, { WEFT_ETCD_PASSWORD: password });
    const s = openStore({ kind: "etcd", ...good, prefix: "/auth-ok" });
    try {
      await s.initCluster({ clusterCIDRs: ["10.244.0.0/16"], backend: "vxlan" });
      assert.equal((await s.getClusterSettings())?.backend, "vxlan");
    } finally {
      await s.close();
    }

    const none = await readError({ kind: "etcd", endpoints: etcd.endpoints, prefix: "/auth-ok" });
    assert.ok(none && isStoreError(none, "Unavailable"), `no user: ${none?.message}`);
    assert.match(none.message, /authentication on: give --etcd-username/);

    const wrong = await readError({
      kind: "etcd",
      ...etcdConnection(etcd.endpoints, { username: "root" }, { WEFT_ETCD_PASSWORD: "wrong" }),
    });
    assert.ok(wrong && isStoreError(wrong, "Unavailable"), `wrong password: ${wrong?.message}`);
    assert.match(wrong.message, /etcd refused the username or password/);
    assert.ok(!wrong.message.includes("wrong"), "the password is not in the message");
  });

  test("the password never shows: not in JSON, inspect, or the CLI's arguments", async () => {
    const conn = etcdConnection(etcd.endpoints, { username: "root" }, { WEFT_ETCD_PASSWORD: password });
    assert.ok(!JSON.stringify(conn).includes(password));
    assert.ok(!utilInspect(conn, { depth: 5 }).includes(password));

    const file = join(dir, "password");
    writeFileSync(file, `${password}\n`, { mode: 0o600 });
    const base = ["--store", "etcd", "--etcd-endpoints", etcd.endpoints[0], "--etcd-username", "root"];
    const viaFile = await weft([
      "cluster",
      "init",
      "--cluster-cidr",
      "10.246.0.0/16",
      "--backend",
      "vxlan",
      ...base,
      "--etcd-password-file",
      file,
    ]);
    assert.equal(viaFile.code, 0, viaFile.stderr);
    const viaEnv = await weft(["status", "-o", "json", ...base], { WEFT_ETCD_PASSWORD: password });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.ok(!viaEnv.stdout.includes(password) && !viaEnv.stderr.includes(password));

    const noPassword = await weft(["status", ...base]);
    assert.equal(noPassword.code, 2);
    assert.match(
      noPassword.stderr,
      /--etcd-username root needs a password: give --etcd-password-file FILE or set \$WEFT_ETCD_PASSWORD/,
    );
  });
});
