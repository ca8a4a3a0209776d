// The agent's health endpoints for a DaemonSet's probes, on 127.0.0.1 only (the pod shares the
// node's network; nothing else needs them):
//   /healthz  liveness: the event loop answers (this handler runs) and the CNI socket server is up
//   /readyz   readiness: joined, pod subnets and backend set up, policy's first sync done, and the
//             store answered recently
// 200 "ok", or 503 with the reason as a short text body (what a person reading the probe wants).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";

export interface HealthChecks {
  /** Why the agent is not alive, or null. */
  live(): string | null;
  /** Why the agent is not ready, or null. */
  ready(): string | null;
}

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves /healthz and /readyz on host:port (port 0 = any free port). */
export async function startHealthServer(
  checks: HealthChecks,
  o: { port: number; host?: string; log: Logger },
): Promise<HealthServer> {
  const host = o.host ?? "127.0.0.1";
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const check = path === "/healthz" ? checks.live : path === "/readyz" ? checks.ready : null;
    if (!check || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: use /healthz or /readyz\n");
      return;
    }
    let why: string | null;
    try {
      why = check();
    } catch (e) {
      why = `health check failed: ${e instanceof Error ? e.message : String(e)}`;
    }
    res.writeHead(why === null ? 200 : 503, { "content-type": "text/plain", "cache-control": "no-store" });
    res.end(why === null ? "ok\n" : `${why}\n`);
  });
  // Probes are short-lived: no connection may keep the agent's shutdown waiting.
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((e: unknown) => {
    throw new Error(
      `cannot serve health endpoints on ${host}:${o.port}: ${e instanceof Error ? e.message : String(e)}`,
    );
  });
  const port = (server.address() as AddressInfo).port;
  o.log.info({ address: `${host}:${port}`, port }, "health endpoints on /healthz and /readyz");
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export interface StoreProbeOptions {
  /** A cheap read of the store; rejects when it is unreachable. */
  read: () => Promise<unknown>;
  /** The last time anything else of the agent's heard from the store (ms since the epoch). */
  lastContact: () => number | undefined;
  /** Probe when nothing was heard for this long (ms). Default 5000. */
  intervalMs?: number;
  /** The store counts as unreachable when nothing was heard for this long (ms). Default 3 x interval. */
  staleMs?: number;
  /** A probe that takes longer than this (ms) failed. Default 3000. */
  timeoutMs?: number;
  /** What is probed, for the reason text. Default "the store". */
  name?: string;
}

/**
 * Whether the store answered recently: the agent's own traffic with it counts (lease, ADD
 * admission, reports), and when it has been quiet for an interval, a cheap read is made.
 */
export class StoreProbe {
  private lastOk: number | undefined;
  private lastError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly interval: number;
  private readonly stale: number;

  constructor(private readonly o: StoreProbeOptions) {
    this.interval = o.intervalMs ?? 5000;
    this.stale = o.staleMs ?? this.interval * 3;
  }

  start(): void {
    this.lastOk ??= Date.now();
    this.timer = setInterval(() => void this.tick(), Math.max(100, Math.floor(this.interval / 2)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private heard(): number {
    return Math.max(this.lastOk ?? 0, this.o.lastContact() ?? 0);
  }

  private async tick(): Promise<void> {
    if (this.running || Date.now() - this.heard() < this.interval) return;
    this.running = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.o.read(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("no answer in time")), this.o.timeoutMs ?? 3000);
        }),
      ]);
      this.lastOk = Date.now();
      this.lastError = undefined;
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
    } finally {
      clearTimeout(timer);
      this.running = false;
    }
  }

  /** Why the store does not count as reachable, or null. */
  problem(): string | null {
    const quiet = Date.now() - this.heard();
    if (quiet <= this.stale) return null;
    return `${this.o.name ?? "the store"} has not answered for ${Math.round(quiet / 1000)} s${this.lastError ? `: ${this.lastError}` : ""}`;
  }
}
