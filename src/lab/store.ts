// The lab's cluster store: the store's own etcd implementation over the lab etcd, reached on its
// unix sockets with the lab's client certificate (see etcd.ts labEtcdConnection).
import type { EtcdTlsFiles } from "../store/etcd/config.js";
import { openStore } from "../store/index.js";
import type { ClusterStore } from "../store/types.js";
import { labEtcdConnection } from "./etcd.js";
import { LabNames } from "./names.js";
import { readState, type LabState } from "./state.js";

/** The lab's cluster store: the kube-apiserver for a --store kubernetes lab, else the lab etcd. */
export function openLabStore(lab: LabState): ClusterStore {
  if (lab.settings.store === "kubernetes" && lab.apiserver)
    return openStore({ kind: "kubernetes", kubeconfig: lab.apiserver.kubeconfig });
  return openStore({ kind: "etcd", ...labEtcdConnection(lab) });
}

/** Where the running lab keeps its cluster state, for commands given no store of their own. */
export type LabStoreLocation =
  { kind: "etcd"; endpoints: string[]; tls?: EtcdTlsFiles } | { kind: "kubernetes"; kubeconfig: string };

export function labStoreLocation(names: LabNames = LabNames.fromEnv()): LabStoreLocation | undefined {
  const st = readState(names.stateFile);
  if (!st) return undefined;
  if (st.settings.store === "kubernetes" && st.apiserver)
    return { kind: "kubernetes", kubeconfig: st.apiserver.kubeconfig };
  return { kind: "etcd", ...labEtcdConnection(st) };
}
