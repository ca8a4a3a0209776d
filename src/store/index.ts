// Opening a store from CLI-style settings. Import the interface from ./types.js.
import { InvalidError } from "./errors.js";
import { lazyStore } from "./lazy.js";
import { localStorePath, openLocalStore } from "./local/index.js";
import type { ClusterStore } from "./types.js";

export type StoreConfig =
  | { kind: "local"; stateDir: string; prefix?: string }
  | { kind: "etcd"; endpoints: string[]; prefix?: string; requestTimeoutMs?: number }
  /** A real kube-apiserver: weft's state as Nodes, Leases and a ConfigMap (src/store/kubernetes). */
  | { kind: "kubernetes"; kubeconfig: string; requestTimeoutMs?: number };

export function openStore(config: StoreConfig): ClusterStore {
  switch (config.kind) {
    case "local":
      return openLocalStore({ path: localStorePath(config.stateDir), prefix: config.prefix });
    // etcd and Kubernetes clients load on first use (see lazy.ts).
    case "etcd":
      return lazyStore(`etcd at ${config.endpoints.join(",")}`, async () =>
        (await import("./etcd/index.js")).openEtcdStore({ endpoints: config.endpoints, prefix: config.prefix, requestTimeoutMs: config.requestTimeoutMs }));
    case "kubernetes":
      return lazyStore(`Kubernetes API (kubeconfig ${config.kubeconfig})`, async () =>
        (await import("./kubernetes/index.js")).openKubernetesStore({ kubeconfig: config.kubeconfig, requestTimeoutMs: config.requestTimeoutMs }));
    default:
      throw new InvalidError(`unknown store kind: use --store local, etcd or kubernetes`);
  }
}

/** Parses --etcd-endpoints: comma-separated http(s) URLs, or unix:///ABSOLUTE/PATH sockets. */
export function parseEtcdEndpoints(text: string): string[] {
  const urls = text.split(",").map((s) => s.trim()).filter(Boolean);
  if (urls.length === 0) throw new InvalidError("--etcd-endpoints is empty: give http://HOST:PORT[,...]");
  for (const u of urls) {
    let ok = false;
    try { ok = /^https?:$/.test(new URL(u).protocol) || /^unix:\/\/\/./.test(u); } catch { ok = false; }
    if (!ok) throw new InvalidError(`--etcd-endpoints: "${u}" is not an http://, https:// or unix:/// URL`);
  }
  return urls;
}
