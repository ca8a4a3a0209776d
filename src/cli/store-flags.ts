// Store selection shared by the CLI commands that read or write cluster objects:
//   --store local --state-dir DIR      the embedded store of a single-host agent
//   --store etcd --etcd-endpoints URL  a cluster's etcd (+ --etcd-cafile/-certfile/-keyfile, --etcd-username
//                                      with --etcd-password-file or $WEFT_ETCD_PASSWORD, as kubeadm's etcd needs)
//   --store kubernetes [--kubeconfig F] a Kubernetes API server
//   (no --store)                       the running lab's store, if a lab is up on this machine
import { existsSync } from "node:fs";
import type { Command } from "commander";
import { localStorePath } from "../store/local/index.js";
import { defaultKubeconfig, openStore, parseEtcdEndpoints, type StoreConfig } from "../store/index.js";
import {
  ETCD_PASSWORD_ENV,
  etcdConnection,
  type EtcdConnection,
  type EtcdSecurityFlags,
} from "../store/etcd/config.js";
import type { ClusterStore } from "../store/types.js";
import { labStoreLocation } from "../lab/store.js";
import { UserError } from "./errors.js";

/** The etcd flags every command that opens an etcd store takes (names as etcd's and kube-apiserver's). */
export interface EtcdFlags {
  etcdEndpoints?: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  etcdUsername?: string;
  etcdPasswordFile?: string;
}

export interface StoreFlags extends EtcdFlags {
  store?: string;
  stateDir?: string;
  kubeconfig?: string;
}

/** Adds --etcd-endpoints and the etcd TLS and user flags. The password is a file or $WEFT_ETCD_PASSWORD, never a flag value (`ps` shows those). */
export function addEtcdOptions(
  cmd: Command,
  endpointsHelp = "etcd endpoints (--store etcd): http(s)://HOST:PORT or unix(s):///PATH, comma-separated",
): Command {
  return cmd
    .option("--etcd-endpoints <url[,url]>", endpointsHelp)
    .option(
      "--etcd-cafile <file>",
      "CA that signed etcd's serving certificate (required with https:// or unixs:// endpoints)",
    )
    .option("--etcd-certfile <file>", "client certificate for etcd --client-cert-auth (with --etcd-keyfile)")
    .option("--etcd-keyfile <file>", "key of --etcd-certfile")
    .option(
      "--etcd-username <name>",
      `etcd user (etcd auth enabled); password from --etcd-password-file or $${ETCD_PASSWORD_ENV}`,
    )
    .option("--etcd-password-file <file>", "file holding the etcd user's password (one trailing newline is ignored)");
}

/** Adds --store, --state-dir, the etcd flags and --kubeconfig to a command. */
export function addStoreOptions(cmd: Command): Command {
  cmd
    .option(
      "--store <kind>",
      "where cluster objects live: local (with --state-dir), etcd (with --etcd-endpoints) or kubernetes; default: the running lab's store",
    )
    .option("--state-dir <dir>", "the agent's state directory (--store local)");
  return addEtcdOptions(cmd).option(
    "--kubeconfig <file>",
    "kubeconfig of the API server (--store kubernetes; default $KUBECONFIG or ~/.kube/config)",
  );
}

const etcdOnlyFlags = (o: EtcdFlags): string[] =>
  (
    [
      ["--etcd-endpoints", o.etcdEndpoints],
      ["--etcd-cafile", o.etcdCafile],
      ["--etcd-certfile", o.etcdCertfile],
      ["--etcd-keyfile", o.etcdKeyfile],
      ["--etcd-username", o.etcdUsername],
      ["--etcd-password-file", o.etcdPasswordFile],
    ] as const
  )
    .filter(([, v]) => v !== undefined)
    .map(([k]) => k);

/** UserError when etcd flags are given to a store that is not etcd. */
export function refuseEtcdFlags(o: EtcdFlags, store: string): void {
  const given = etcdOnlyFlags(o);
  if (given.length > 0)
    throw new UserError(
      `${given.join(", ")} go${given.length === 1 ? "es" : ""} with --store etcd, not --store ${store}`,
    );
}

/** The etcd connection the flags name (endpoints, TLS files, user); UserError says what is missing. */
export function etcdConnectionFromFlags(o: EtcdFlags): EtcdConnection {
  if (!o.etcdEndpoints) throw new UserError("--store etcd needs --etcd-endpoints URL[,URL]");
  const sec: EtcdSecurityFlags = {
    cafile: o.etcdCafile,
    certfile: o.etcdCertfile,
    keyfile: o.etcdKeyfile,
    username: o.etcdUsername,
    passwordFile: o.etcdPasswordFile,
  };
  try {
    return etcdConnection(parseEtcdEndpoints(o.etcdEndpoints), sec);
  } catch (e) {
    throw new UserError(e instanceof Error ? e.message : String(e));
  }
}

/** The store the flags name; UserError (exit 2) for incomplete or contradictory flags. */
export function storeConfigFromFlags(o: StoreFlags, opts: { mustExist?: boolean } = {}): StoreConfig {
  const kind = o.store ?? (o.stateDir ? "local" : o.etcdEndpoints ? "etcd" : o.kubeconfig ? "kubernetes" : undefined);
  switch (kind) {
    case "local":
      if (!o.stateDir) throw new UserError("--store local needs --state-dir DIR (the agent's state directory)");
      refuseEtcdFlags(o, "local");
      if (opts.mustExist && !existsSync(localStorePath(o.stateDir)))
        throw new UserError(`--state-dir ${o.stateDir}: no store there (${localStorePath(o.stateDir)} does not exist)`);
      return { kind: "local", stateDir: o.stateDir };
    case "etcd":
      return { kind: "etcd", ...etcdConnectionFromFlags(o) };
    case "kubernetes": {
      refuseEtcdFlags(o, "kubernetes");
      const kubeconfig = o.kubeconfig ?? defaultKubeconfig();
      if (!existsSync(kubeconfig))
        throw new UserError(`--store kubernetes: kubeconfig ${kubeconfig} does not exist (give --kubeconfig FILE)`);
      return { kind: "kubernetes", kubeconfig };
    }
    case undefined: {
      // TLS or user flags alone name no store: say so rather than ignore them.
      const stray = etcdOnlyFlags(o);
      if (stray.length > 0)
        throw new UserError(`${stray.join(", ")}: give --etcd-endpoints URL too (they describe an etcd store)`);
      const lab = labStoreLocation();
      if (lab) return lab;
      throw new UserError(
        "no store named and no lab running: give --store local --state-dir DIR or --store etcd --etcd-endpoints URL",
      );
    }
    default:
      throw new UserError(`--store ${kind}: use local, etcd or kubernetes`);
  }
}

/** Opens the store the flags name (mustExist: a read-only command refuses a missing local store), runs fn, and closes the store whatever happens. */
export async function withStore<T>(
  o: StoreFlags,
  fn: (store: ClusterStore) => Promise<T>,
  opts: { mustExist?: boolean } = {},
): Promise<T> {
  const store = openStore(storeConfigFromFlags(o, opts));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
