// Store selection shared by the CLI commands that read or write cluster objects:
//   --store local --state-dir DIR      the embedded store of a single-host agent
//   --store etcd --etcd-endpoints URL  a cluster's etcd
//   --store kubernetes [--kubeconfig F] a Kubernetes API server
//   (no --store)                       the running lab's store, if a lab is up on this machine
import { existsSync } from "node:fs";
import type { Command } from "commander";
import { localStorePath } from "../store/local/index.js";
import { openStore, parseEtcdEndpoints, type StoreConfig } from "../store/index.js";
import type { ClusterStore } from "../store/types.js";
import { labStoreLocation } from "../lab/store.js";
import { UserError } from "./errors.js";

export interface StoreFlags {
  store?: string;
  stateDir?: string;
  etcdEndpoints?: string;
  kubeconfig?: string;
}

/** Adds --store, --state-dir and --etcd-endpoints to a command. */
export function addStoreOptions(cmd: Command): Command {
  return cmd
    .option("--store <kind>", "where cluster objects live: local (with --state-dir) or etcd (with --etcd-endpoints); default: the running lab's store")
    .option("--state-dir <dir>", "the agent's state directory (--store local)")
    .option("--etcd-endpoints <url[,url]>", "etcd endpoints (--store etcd)")
    .option("--kubeconfig <file>", "kubeconfig of the API server (--store kubernetes; default $KUBECONFIG or ~/.kube/config)");
}

/** The store the flags name; UserError (exit 2) for incomplete or contradictory flags. */
export function storeConfigFromFlags(o: StoreFlags, opts: { mustExist?: boolean } = {}): StoreConfig {
  const kind = o.store ?? (o.stateDir ? "local" : o.etcdEndpoints ? "etcd" : o.kubeconfig ? "kubernetes" : undefined);
  switch (kind) {
    case "local":
      if (!o.stateDir) throw new UserError("--store local needs --state-dir DIR (the agent's state directory)");
      if (o.etcdEndpoints) throw new UserError("--etcd-endpoints goes with --store etcd, not --store local");
      if (opts.mustExist && !existsSync(localStorePath(o.stateDir))) throw new UserError(`--state-dir ${o.stateDir}: no store there (${localStorePath(o.stateDir)} does not exist)`);
      return { kind: "local", stateDir: o.stateDir };
    case "etcd":
      if (!o.etcdEndpoints) throw new UserError("--store etcd needs --etcd-endpoints URL[,URL]");
      try {
        return { kind: "etcd", endpoints: parseEtcdEndpoints(o.etcdEndpoints) };
      } catch (e) {
        throw new UserError(e instanceof Error ? e.message : String(e));
      }
    case "kubernetes": {
      const kubeconfig = o.kubeconfig ?? process.env.KUBECONFIG ?? `${process.env.HOME ?? "/root"}/.kube/config`;
      if (!existsSync(kubeconfig)) throw new UserError(`--store kubernetes: kubeconfig ${kubeconfig} does not exist (give --kubeconfig FILE)`);
      return { kind: "kubernetes", kubeconfig };
    }
    case undefined: {
      const lab = labStoreLocation();
      if (lab) return lab;
      throw new UserError("no store named and no lab running: give --store local --state-dir DIR or --store etcd --etcd-endpoints URL");
    }
    default:
      throw new UserError(`--store ${kind}: use local, etcd or kubernetes`);
  }
}

/** Opens the store the flags name (mustExist: a read-only command refuses a missing local store), runs fn, and closes the store whatever happens. */
export async function withStore<T>(o: StoreFlags, fn: (store: ClusterStore) => Promise<T>, opts: { mustExist?: boolean } = {}): Promise<T> {
  const store = openStore(storeConfigFromFlags(o, opts));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
