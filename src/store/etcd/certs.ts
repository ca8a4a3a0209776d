// The certificates a client-certificate TLS etcd needs, made with openssl for the lab and tests:
// a CA, a serving certificate for 127.0.0.1/localhost (grpc names a unix socket's server
// "localhost", so the same certificate serves unixs:// too; it is also the members' peer
// certificate, hence clientAuth), and a client certificate. Keys are 0600.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EtcdTlsFiles } from "./config.js";

export interface EtcdCertificates {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

function openssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.status !== 0)
    throw new Error(
      `openssl ${args[0]} failed (is the openssl package installed?): ${(r.stderr || String(r.error)).trim()}`,
    );
}

/** CA, server and client certificates in dir (created 0700); valid for 10 years. */
export function makeEtcdCertificates(dir: string, clientName = "weft"): EtcdCertificates {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (name: string) => join(dir, name);
  const days = "3650";
  const key = (file: string) => {
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]);
    chmodSync(file, 0o600);
  };
  key(f("ca.key"));
  openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    f("ca.key"),
    "-days",
    days,
    "-subj",
    "/CN=weft-etcd-ca",
    "-out",
    f("ca.crt"),
  ]);
  const sign = (name: string, cn: string, ext: string) => {
    key(f(`${name}.key`));
    openssl(["req", "-new", "-key", f(`${name}.key`), "-subj", `/CN=${cn}`, "-out", f(`${name}.csr`)]);
    writeFileSync(f(`${name}.ext`), ext);
    openssl([
      "x509",
      "-req",
      "-in",
      f(`${name}.csr`),
      "-CA",
      f("ca.crt"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-days",
      days,
      "-extfile",
      f(`${name}.ext`),
      "-out",
      f(`${name}.crt`),
    ]);
    rmSync(f(`${name}.csr`));
    rmSync(f(`${name}.ext`));
  };
  sign("server", "weft-etcd", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
  sign("client", clientName, "extendedKeyUsage=clientAuth\n");
  return {
    dir,
    caFile: f("ca.crt"),
    serverCertFile: f("server.crt"),
    serverKeyFile: f("server.key"),
    clientCertFile: f("client.crt"),
    clientKeyFile: f("client.key"),
  };
}

/** The client side of `certs`, as a store connection takes it. */
export function clientTls(certs: EtcdCertificates): EtcdTlsFiles {
  return { caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile };
}

/** etcd's flags for client-certificate TLS on its client URLs (and, with peer, on its peer URLs). */
export function etcdServerTlsArgs(
  certs: Pick<EtcdCertificates, "caFile" | "serverCertFile" | "serverKeyFile">,
  peer = false,
): string[] {
  return [
    "--client-cert-auth",
    "--trusted-ca-file",
    certs.caFile,
    "--cert-file",
    certs.serverCertFile,
    "--key-file",
    certs.serverKeyFile,
    ...(peer
      ? [
          "--peer-client-cert-auth",
          "--peer-trusted-ca-file",
          certs.caFile,
          "--peer-cert-file",
          certs.serverCertFile,
          "--peer-key-file",
          certs.serverKeyFile,
        ]
      : []),
  ];
}
