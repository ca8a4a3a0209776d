// How to reach an etcd: its endpoints and the credentials kubeadm's etcd asks for (a CA, a client
// certificate and key, a username and password). Parsed and checked here, before any client
// exists, so a half-secured configuration is refused with what is missing instead of failing
// later with a TLS alert. No etcd client is loaded by this module (see ../lazy.ts).
import { accessSync, constants, readFileSync } from "node:fs";
import { InvalidError } from "../errors.js";

/**
 * A secret held in memory. JSON (pino, state files) and util.inspect show "(secret)", never the
 * value; reveal() is for the one place that hands it to the etcd client.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toJSON(): string {
    return "(secret)";
  }
  toString(): string {
    return "(secret)";
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "Secret((secret))";
  }
}

/** Client TLS, as etcdctl's --cacert/--cert/--key: files, read when the client is made. */
export interface EtcdTlsFiles {
  /** CA that signed etcd's serving certificate. */
  caFile: string;
  /** Client certificate (etcd --client-cert-auth); always with keyFile. */
  certFile?: string;
  keyFile?: string;
}

/** etcd's own users (etcdctl user add, auth enable). */
export interface EtcdAuth {
  username: string;
  password: Secret;
}

export interface EtcdConnection {
  /** http(s)://HOST:PORT, unix:///PATH or unixs:///PATH (TLS on a unix socket). */
  endpoints: string[];
  tls?: EtcdTlsFiles;
  auth?: EtcdAuth;
}

/** The environment variable that carries the etcd password when no file is given. */
export const ETCD_PASSWORD_ENV = "WEFT_ETCD_PASSWORD";

const secureScheme = (u: string): boolean => /^(https:|unixs:)/.test(u);

/** Parses --etcd-endpoints: comma-separated http(s)://HOST:PORT, or unix(s):///ABSOLUTE/PATH sockets. */
export function parseEtcdEndpoints(text: string): string[] {
  const urls = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (urls.length === 0) throw new InvalidError("--etcd-endpoints is empty: give http://HOST:PORT[,...]");
  for (const u of urls) {
    if (/^unixs?:\/\/\/./.test(u)) continue;
    let ok = false;
    try {
      const x = new URL(u);
      ok = /^https?:$/.test(x.protocol) && x.hostname !== "";
    } catch {
      ok = false;
    }
    if (!ok)
      throw new InvalidError(
        `--etcd-endpoints: "${u}" is not an http://, https:// or unix:/// URL (unixs:/// for TLS on a unix socket)`,
      );
  }
  return urls;
}

function readable(flag: string, file: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch (e) {
    throw new InvalidError(`${flag} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

export interface EtcdSecurityFlags {
  cafile?: string;
  certfile?: string;
  keyfile?: string;
  username?: string;
  passwordFile?: string;
}

/**
 * The connection the flags describe; InvalidError names what is missing or contradictory:
 * TLS endpoints without a CA, a certificate without its key, plain endpoints with TLS files,
 * a username without a password. The password comes from the file, else $WEFT_ETCD_PASSWORD
 * (never a flag value, which `ps` would show).
 */
export function etcdConnection(
  endpoints: string[],
  f: EtcdSecurityFlags,
  env: NodeJS.ProcessEnv = process.env,
): EtcdConnection {
  const secure = endpoints.filter(secureScheme);
  const plain = endpoints.filter((u) => !secureScheme(u));
  if (secure.length > 0 && plain.length > 0) {
    throw new InvalidError(
      `--etcd-endpoints mixes TLS (${secure[0]}) and plain (${plain[0]}) endpoints: use https:// / unixs:// for all of them or for none`,
    );
  }
  const tlsFlags = [f.cafile && "--etcd-cafile", f.certfile && "--etcd-certfile", f.keyfile && "--etcd-keyfile"].filter(
    Boolean,
  );
  if (secure.length === 0 && tlsFlags.length > 0) {
    throw new InvalidError(
      `${tlsFlags.join(", ")} need TLS endpoints: write --etcd-endpoints as https://HOST:PORT (or unixs:///PATH), not ${plain[0]}`,
    );
  }
  if (secure.length > 0 && !f.cafile) {
    throw new InvalidError(
      `${secure[0]} is a TLS endpoint but no CA was given: add --etcd-cafile FILE (the CA that signed etcd's serving certificate; kubeadm: /etc/kubernetes/pki/etcd/ca.crt)`,
    );
  }
  if (f.certfile && !f.keyfile)
    throw new InvalidError(`--etcd-certfile ${f.certfile} was given without its key: add --etcd-keyfile FILE`);
  if (f.keyfile && !f.certfile)
    throw new InvalidError(`--etcd-keyfile ${f.keyfile} was given without its certificate: add --etcd-certfile FILE`);
  const conn: EtcdConnection = { endpoints };
  if (f.cafile) {
    readable("--etcd-cafile", f.cafile);
    if (f.certfile) readable("--etcd-certfile", f.certfile);
    if (f.keyfile) readable("--etcd-keyfile", f.keyfile);
    conn.tls = { caFile: f.cafile, ...(f.certfile ? { certFile: f.certfile, keyFile: f.keyfile } : {}) };
  }
  const envPassword = env[ETCD_PASSWORD_ENV];
  if (f.username !== undefined) {
    if (f.username === "") throw new InvalidError("--etcd-username is empty");
    let password: string;
    if (f.passwordFile) {
      readable("--etcd-password-file", f.passwordFile);
      // One trailing newline is the file's, not the password's (echo pw > file).
      password = readFileSync(f.passwordFile, "utf8").replace(/\r?\n$/, "");
    } else if (envPassword !== undefined) {
      password = envPassword;
    } else {
      throw new InvalidError(
        `--etcd-username ${f.username} needs a password: give --etcd-password-file FILE or set $${ETCD_PASSWORD_ENV}`,
      );
    }
    if (password === "")
      throw new InvalidError(
        `the etcd password for ${f.username} is empty (${f.passwordFile ? `--etcd-password-file ${f.passwordFile}` : `$${ETCD_PASSWORD_ENV}`})`,
      );
    conn.auth = { username: f.username, password: new Secret(password) };
  } else if (f.passwordFile) {
    throw new InvalidError("--etcd-password-file was given without --etcd-username");
  }
  return conn;
}

/** The files of `tls`, read now; InvalidError names a file that went away or is unreadable. */
export function readTlsFiles(tls: EtcdTlsFiles): { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer } {
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new InvalidError(`${flag} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  return {
    rootCertificate: read("--etcd-cafile", tls.caFile),
    ...(tls.certFile && tls.keyFile
      ? { certChain: read("--etcd-certfile", tls.certFile), privateKey: read("--etcd-keyfile", tls.keyFile) }
      : {}),
  };
}

/** A grpc target for an endpoint: unixs:///PATH is TLS on unix:///PATH (the credentials say TLS). */
export function grpcHost(endpoint: string): string {
  return endpoint.startsWith("unixs://") ? `unix://${endpoint.slice("unixs://".length)}` : endpoint;
}
