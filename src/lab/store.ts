// The lab's cluster store: the store's own etcd implementation over the lab etcd, reached on
// 127.0.0.1 (the CLI and the kubelet run in the machine's namespace; agents use the unix sockets).
import { openStore } from "../store/index.js";
import type { ClusterStore } from "../store/types.js";
import { tcpEndpoints } from "./etcd.js";
import { LabNames } from "./names.js";
import { readState, type LabState } from "./state.js";

/** The lab's cluster store: the kube-apiserver for a --store kubernetes lab, else the lab etcd. */
export function openLabStore(lab: LabState): ClusterStore {
  if (lab.settings.store === "kubernetes" && lab.apiserver) return openStore({ kind: "kubernetes", kubeconfig: lab.apiserver.kubeconfig });
  return openStore({ kind: "etcd", endpoints: tcpEndpoints(lab.etcd) });
}

/** Where the running lab keeps its cluster state, for commands given no store of their own. */
export type LabStoreLocation =
  | { kind: "etcd"; endpoints: string[] }
  | { kind: "kubernetes"; kubeconfig: string };

export function labStoreLocation(names: LabNames = LabNames.fromEnv()): LabStoreLocation | undefined {
  const st = readState(names.stateFile);
  if (!st) return undefined;
  if (st.settings.store === "kubernetes" && st.apiserver) return { kind: "kubernetes", kubeconfig: st.apiserver.kubeconfig };
  return { kind: "etcd", endpoints: tcpEndpoints(st.etcd) };
}

/**
 * The running lab's etcd endpoints (for `weft apply`/`get` when no store is named), or undefined
 * when no lab is running on this machine.
 */
export function labEtcdEndpoints(names: LabNames = LabNames.fromEnv()): string[] | undefined {
  const st = readState(names.stateFile);
  return st ? tcpEndpoints(st.etcd) : undefined;
}
