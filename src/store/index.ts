// Opening a store from CLI-style settings. Import the interface from ./types.js.
import { homedir } from "node:os";
import { join } from "node:path";
import type { EtcdConnection } from "./etcd/config.js";
import { InvalidError } from "./errors.js";
import { lazyStore } from "./lazy.js";
import { localStorePath, openLocalStore } from "./local/index.js";
import type { ClusterStore } from "./types.js";

export type StoreConfig =
  | { kind: "local"; stateDir: string; prefix?: string }
  /** endpoints, and TLS files and a user when etcd asks for them (see ./etcd/config.ts). */
  | ({ kind: "etcd"; prefix?: string; requestTimeoutMs?: number } & EtcdConnection)
  /**
   * A real kube-apiserver: weft's state as Nodes, Leases and a ConfigMap (src/store/kubernetes).
   * Without kubeconfig: $KUBECONFIG, else in a pod its ServiceAccount token, else ~/.kube/config.
   */
  | {
      kind: "kubernetes";
      kubeconfig?: string;
      requestTimeoutMs?: number;
      /**
       * In a pod (ServiceAccount credentials): the API server's address, over the environment's
       * KUBERNETES_SERVICE_HOST/PORT (which name the kubernetes Service; without kube-proxy it does not answer).
       */
      apiServer?: { host: string; port: number };
    };

export function openStore(config: StoreConfig): ClusterStore {
  switch (config.kind) {
    case "local":
      return openLocalStore({ path: localStorePath(config.stateDir), prefix: config.prefix });
    // etcd and Kubernetes clients load on first use (see lazy.ts).
    case "etcd":
      return lazyStore(`etcd at ${config.endpoints.join(",")}`, async () =>
        (await import("./etcd/index.js")).openEtcdStore({
          endpoints: config.endpoints,
          tls: config.tls,
          auth: config.auth,
          prefix: config.prefix,
          requestTimeoutMs: config.requestTimeoutMs,
        }),
      );
    case "kubernetes":
      return lazyStore(
        `Kubernetes API (${config.kubeconfig ? `kubeconfig ${config.kubeconfig}` : config.apiServer ? `${config.apiServer.host}:${config.apiServer.port}, ServiceAccount credentials` : "default credentials"})`,
        async () =>
          (await import("./kubernetes/index.js")).openKubernetesStore({
            kubeconfig: config.kubeconfig,
            requestTimeoutMs: config.requestTimeoutMs,
            ...(config.apiServer
              ? {
                  env: {
                    ...process.env,
                    KUBERNETES_SERVICE_HOST: config.apiServer.host,
                    KUBERNETES_SERVICE_PORT: String(config.apiServer.port),
                  },
                }
              : {}),
          }),
      );
    default:
      throw new InvalidError(`unknown store kind: use --store local, etcd or kubernetes`);
  }
}

export { parseEtcdEndpoints } from "./etcd/config.js";

/** The kubeconfig a Kubernetes store uses when none is named: $KUBECONFIG, else ~/.kube/config (as kubectl). */
export function defaultKubeconfig(env: NodeJS.ProcessEnv = process.env): string {
  return env.KUBECONFIG || join(homedir(), ".kube", "config");
}
