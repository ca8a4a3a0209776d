// A small JSON client for the Kubernetes REST API. @kubernetes/client-node does the kubeconfig
// (server, CA, client certificates, tokens and auth plugins) and the watches; requests go out as
// plain JSON over node:https so objects round-trip exactly as the apiserver sends them (the typed
// API classes turn timestamps into Date objects and drop fields they don't know).
import { existsSync, readFileSync, statSync } from "node:fs";
import { Agent, request, type RequestOptions } from "node:https";
import { isIPv6 } from "node:net";
import { join } from "node:path";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import * as k8s from "@kubernetes/client-node";
import { UnavailableError } from "../errors.js";

/** A JSON object as the apiserver sends it. */
export type Json = Record<string, unknown>;

/** metav1.Status as sent with an error response. */
export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; causes?: Array<{ field?: string; message?: string }> };
}

/** The apiserver answered with an error status (4xx/5xx other than "unreachable"). */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly body: KubeStatus,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

export const isApiError = (e: unknown, status?: number): e is KubeApiError =>
  e instanceof KubeApiError && (status === undefined || e.status === status);

export interface KubeClientOptions {
  /** Per-request timeout. Default 10 s. */
  requestTimeoutMs?: number;
}

/** Where a pod's ServiceAccount token, ca.crt and namespace are mounted. */
export const SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * The ServiceAccount directory to use in a pod: $WEFT_SERVICEACCOUNT_DIR (tests) or the standard
 * mount, if it holds a token and KUBERNETES_SERVICE_HOST/PORT are set; else undefined.
 */
export function inClusterDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dir = env.WEFT_SERVICEACCOUNT_DIR || SERVICEACCOUNT_DIR;
  if (!env.KUBERNETES_SERVICE_HOST || !env.KUBERNETES_SERVICE_PORT) return undefined;
  return existsSync(join(dir, "token")) ? dir : undefined;
}

/**
 * A kubeconfig whose bearer token is the ServiceAccount token file, read again whenever the file
 * changed (the kubelet rotates projected tokens), for requests and watches alike. (client-node's
 * own tokenFile auth re-reads only every minute and caches one token for every file.)
 */
class ServiceAccountConfig extends k8s.KubeConfig {
  private token?: { stamp: string; value: string };

  constructor(private readonly tokenFile: string) {
    super();
  }

  private currentToken(): string {
    const file = this.tokenFile;
    try {
      const st = statSync(file);
      const stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (this.token?.stamp !== stamp) this.token = { stamp, value: readFileSync(file, "utf8").trim() };
    } catch (err) {
      throw new UnavailableError(`cannot read the ServiceAccount token ${file}: ${(err as Error).message}`, err);
    }
    return this.token.value;
  }

  override async applyToHTTPSOptions(opts: Parameters<k8s.KubeConfig["applyToHTTPSOptions"]>[0]): Promise<void> {
    await super.applyToHTTPSOptions(opts);
    opts.headers = { ...(opts.headers ?? {}), Authorization: `Bearer ${this.currentToken()}` };
  }
}

export class KubeClient {
  readonly kc: k8s.KubeConfig;
  readonly server: string;
  readonly description: string;
  private readonly timeoutMs: number;
  private agent?: Agent | HttpAgent;
  /** In-cluster: the ServiceAccount token file. */
  private readonly tokenFile?: string;

  constructor(kc: k8s.KubeConfig, options: KubeClientOptions & { tokenFile?: string } = {}) {
    this.kc = kc;
    this.tokenFile = options.tokenFile;
    const cluster = kc.getCurrentCluster();
    if (!cluster)
      throw new UnavailableError(
        "the kubeconfig has no current cluster: set current-context (kubectl config use-context NAME)",
      );
    this.server = cluster.server.replace(/\/+$/, "");
    this.description = `kube-apiserver at ${this.server}${this.tokenFile ? " (in-cluster ServiceAccount)" : ""}`;
    this.timeoutMs = options.requestTimeoutMs ?? 10_000;
  }

  static fromFile(kubeconfig: string, options: KubeClientOptions = {}): KubeClient {
    const kc = new k8s.KubeConfig();
    try {
      kc.loadFromFile(kubeconfig);
    } catch (err) {
      throw new UnavailableError(`cannot read kubeconfig ${kubeconfig}: ${(err as Error).message}`, err);
    }
    return new KubeClient(kc, options);
  }

  /**
   * In a pod: the ServiceAccount token and ca.crt in `dir` (default: inClusterDir()), the apiserver
   * at $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT. The token is re-read whenever the file
   * changes (ServiceAccountConfig).
   */
  static inCluster(dir: string, env: NodeJS.ProcessEnv = process.env, options: KubeClientOptions = {}): KubeClient {
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT;
    if (!host || !port)
      throw new UnavailableError(
        "in-cluster configuration needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (set by the kubelet in every pod): give --kubeconfig outside a pod",
      );
    const tokenFile = join(dir, "token");
    const caFile = join(dir, "ca.crt");
    for (const f of [tokenFile, caFile])
      if (!existsSync(f))
        throw new UnavailableError(
          `in-cluster configuration: ${f} is missing: mount the pod's ServiceAccount token (automountServiceAccountToken: true), or give --kubeconfig`,
        );
    const kc = new ServiceAccountConfig(tokenFile);
    kc.loadFromClusterAndUser(
      {
        name: "in-cluster",
        server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
        caFile,
        skipTLSVerify: false,
      },
      { name: "service-account" },
    );
    return new KubeClient(kc, { ...options, tokenFile });
  }

  /** TLS settings and headers from the kubeconfig; auth plugins may refresh tokens, so per request. */
  private async options(): Promise<RequestOptions> {
    const o: RequestOptions = {};
    await this.kc.applyToHTTPSOptions(o);
    if (!this.agent) {
      // One keep-alive agent per client (the kubeconfig's own agent is made anew for every call).
      this.agent = this.server.startsWith("http:")
        ? new HttpAgent({ keepAlive: true })
        : new Agent({
            keepAlive: true,
            ca: o.ca,
            cert: o.cert,
            key: o.key,
            rejectUnauthorized: o.rejectUnauthorized,
            servername: o.servername,
          });
    }
    return { headers: o.headers, auth: o.auth, agent: this.agent };
  }

  async request<T = Json>(
    method: string,
    path: string,
    options: { query?: Record<string, string | undefined>; body?: unknown; contentType?: string } = {},
  ): Promise<T> {
    let base: RequestOptions;
    try {
      base = await this.options();
    } catch (err) {
      throw new UnavailableError(
        `cannot apply the kubeconfig's credentials for ${this.server}: ${(err as Error).message}`,
        err,
      );
    }
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const headers: Record<string, string | string[] | number> = {
      ...(base.headers as Record<string, string>),
      accept: "application/json",
      "user-agent": "weft",
    };
    if (payload) {
      headers["content-type"] = options.contentType ?? "application/json";
      headers["content-length"] = payload.length;
    }
    const send = url.protocol === "http:" ? httpRequest : request;
    return new Promise<T>((resolve, reject) => {
      const req = send(url, { method, headers, auth: base.auth, agent: base.agent, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (err) => reject(this.unreachable(err)));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown;
          try {
            body = text ? JSON.parse(text) : {};
          } catch {
            body = { message: text.slice(0, 300) };
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(body as T);
          const st = (body ?? {}) as KubeStatus;
          const message = st.message || `${method} ${path}: HTTP ${status}`;
          if (status === 401 || status === 403) {
            return reject(
              new UnavailableError(
                `${this.description} refused weft's request (${status} ${st.reason ?? ""}: ${message}): check the kubeconfig's user; weft needs to read and write nodes, leases, configmaps, namespaces, pods and networkpolicies`,
              ),
            );
          }
          if (status >= 500 || status === 429) {
            return reject(
              new UnavailableError(
                `${this.description} failed the request (${status}: ${message}); retry shortly, and check the apiserver's log and its etcd if it persists`,
              ),
            );
          }
          reject(new KubeApiError(status, st.reason ?? "", message, st));
        });
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on("error", (err) => reject(this.unreachable(err)));
      if (payload) req.write(payload);
      req.end();
    });
  }

  private unreachable(err: Error): UnavailableError {
    return new UnavailableError(
      `${this.description} is unreachable (${err.message}): is it running, and does the kubeconfig point at it?`,
      err,
    );
  }

  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }
}

/** metav1.MicroTime text: RFC 3339 with exactly 6 fractional digits (the apiserver insists). */
export function microTime(d: Date = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** GET path; undefined when the object does not exist (404). */
export async function getOrUndefined(client: KubeClient, path: string): Promise<Json | undefined> {
  try {
    return await client.request("GET", path);
  } catch (err) {
    if (isApiError(err, 404)) return undefined;
    throw err;
  }
}
