// The lab's kube-apiserver (--store kubernetes), started by the store's launcher
// (src/store/kubernetes/apiserver-process.ts) in its persistent mode: detached, over the lab etcd,
// its working directory (certificates, token, kubeconfig, log) inside the lab directory.
import { rmSync } from "node:fs";
import type { EtcdTlsFiles } from "../store/etcd/config.js";
import { kubeApiserverBinary, startKubeApiserver, type StaticToken } from "./apiserver-process.js";
import { isAlive, procStart, type ProcRef } from "./procs.js";

export const apiserverBinary = kubeApiserverBinary;

export interface LabApiserver {
  dir: string;
  url: string;
  kubeconfig: string;
  proc?: ProcRef;
}

/** Starts the apiserver unless `have` is still running; a dead one's directory is replaced. */
export async function ensureApiserver(
  labDir: string,
  etcdServers: readonly string[],
  etcdTls: EtcdTlsFiles | undefined,
  have: LabApiserver | undefined,
  /** Real kubelets: ServiceAccount admission (pods get tokens), Node,RBAC authorization. */
  realNodes = false,
  /** Static tokens besides the admin's (a real kubelet's system:node:NAME); kubeconfig-NAME in `dir`. */
  tokens: StaticToken[] = [],
): Promise<LabApiserver> {
  if (have && isAlive(have.proc)) return have;
  if (have) rmSync(have.dir, { recursive: true, force: true });
  const a = await startKubeApiserver({
    etcdServers: [...etcdServers],
    ...(etcdTls ? { etcdTls } : {}),
    baseDir: labDir,
    persistent: true,
    realNodes,
    tokens,
  });
  const pid = a.pid;
  const start = pid === undefined ? undefined : procStart(pid);
  if (pid === undefined || start === undefined) throw new Error("kube-apiserver exited right after start-up");
  return { dir: a.dir, url: a.url, kubeconfig: a.kubeconfig, proc: { pid, start } };
}
