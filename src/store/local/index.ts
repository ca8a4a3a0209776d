// The local store: the whole ClusterStore in one SQLite file, for a single host (`--store local`).
import { join } from "node:path";
import { KvClusterStore, type KvStoreOptions } from "../kvstore.js";
import { SqliteKv, type SqliteKvOptions } from "./sqlite-kv.js";

/** The store file inside an agent's --state-dir. */
export const LOCAL_STORE_FILE = "store.db";

export interface LocalStoreOptions extends KvStoreOptions, SqliteKvOptions {
  /** The SQLite file; e.g. join(stateDir, LOCAL_STORE_FILE). Several processes may open it at once. */
  path: string;
}

export function openLocalStore(options: LocalStoreOptions): KvClusterStore {
  return new KvClusterStore(new SqliteKv(options.path, options), options);
}

export const localStorePath = (stateDir: string): string => join(stateDir, LOCAL_STORE_FILE);
