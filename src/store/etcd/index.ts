// The etcd store (`--store etcd --etcd-endpoints URL[,URL]`).
import { KvClusterStore, type KvStoreOptions } from "../kvstore.js";
import { EtcdKv, type EtcdKvOptions } from "./etcd-kv.js";

export interface EtcdStoreOptions extends KvStoreOptions, EtcdKvOptions {}

export function openEtcdStore(options: EtcdStoreOptions): KvClusterStore {
  return new KvClusterStore(new EtcdKv(options), options);
}
