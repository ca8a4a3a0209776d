// Starts the node agent. Order matters:
//   0. before anything is changed: refuse the machine's own network namespace unless realNode,
//      and refuse a namespace another live agent serves (the namespace lock, held for life)
//   1. refuse if a live agent holds the socket; open the IPAM state; enable forwarding
//   2. roll back half-made ADDs (never touching ready pods)
//   3. serve the socket: DEL works from here on; ADD answers "try again later" (11) until ready
//   4. join the cluster (store, lease, subnets, backend, peers), set the egress masquerade from the
//      cluster settings, and start policy enforcement with every wired pod (it adopts the previous
//      agent's rules in one atomic replace), then "agent ready".
// With a health port, /healthz and /readyz answer from step 3 on (health.ts).
// SIGTERM/SIGINT close the socket and exit; pods, routes and rules stay (the agent owns no pod
// state in memory), and the node lease runs out by its TTL unless a new agent takes it over
// (with handoverSeconds, where the store can, it stays live that long for the next agent).
import type { Server } from "node:net";
import { pino, type Logger } from "pino";
import { type Pool } from "../ipam/pool.js";
import { IpamStore } from "../ipam/store.js";
import { createPodKernel, type PodKernel, type PodKernelName } from "../kernel/pod/index.js";
import { PeerWriteChannel } from "../kernel/peer-writes.js";
import { inHostNetns } from "../kernel/nsfile.js";
// run.js, not index.js: the index also exports the metrics module (prom-client), which loads only with --metrics-port.
import { startPolicyEnforcement, type PolicyEnforcement } from "../policy-agent/run.js";
import { openStore, type StoreConfig } from "../store/index.js";
import { isStoreError } from "../store/errors.js";
import { Membership, type JoinResult } from "./cluster.js";
import { AgentCode, AgentFailure } from "./codes.js";
import { lockNetns } from "./locks.js";
import { HOST_IF_PATTERN } from "./naming.js";
import { listen, removeStaleSocket } from "./server.js";
import { AgentService, localPodsOf } from "./service.js";
import { detectUnderlay } from "./underlay.js";
import { DelQueue } from "./ops/del-queue.js";
import { startHealthServer, StoreProbe, type HealthServer } from "./health.js";
import { applyMasquerade } from "./masquerade.js";

export interface AgentConfig {
  node: string;
  stateDir: string;
  socket: string;
  /**
   * Where the node's cluster lives. Absent: a bare agent on fixed `pools` (benchmarks), with no
   * store and no network policy.
   */
  store?: StoreConfig;
  /** With a local store: this host's pod CIDRs (the whole cluster). Without a store: the pools. */
  pools?: Pool[];
  /** Explicit pod MTU (--mtu); otherwise the backend's (cluster) or the underlay's (single host). */
  mtu?: number;
  /** Bytes the backend's encapsulation takes (bare agent only; 0 by default). */
  backendOverhead?: number;
  /** Underlay addresses to register (default: found in the namespace). */
  underlay?: string[];
  leaseTtlSeconds?: number;
  subnetGraceSeconds?: number;
  /** On stop, keep the node's lease live this long for the next agent (--handover; Kubernetes store). */
  handoverSeconds?: number;
  resyncMs?: number;
  /** Policy metrics on 127.0.0.1:PORT (0 = any free port); absent = no endpoint. */
  metricsPort?: number;
  /** Deny log via NFLOG + tcpdump (`weft agent` turns it on unless --no-deny-log; tcpdump dies with the agent). */
  denyLog?: boolean;
  /**
   * How the agent talks to the kernel for pods and peer routes (`--kernel`, default netlink):
   * rtnetlink from the agent itself (about 2 ms per ADD), or iproute2 child processes (about
   * 9 ms), which leave the same kernel state (src/kernel/pod/cases.ts checks both).
   */
  kernel?: PodKernelName;
  /**
   * This is a real node: the agent may run in the machine's own network namespace (that of PID 1).
   * Only a real node's DaemonSet sets it (`--real-node`); tests, the lab and benchmarks never do.
   */
  realNode?: boolean;
  /**
   * Where NetworkPolicies, Pods and Namespaces come from when not from `store`: a Kubernetes API
   * (only its objects are used; weft's own leases stay in `store`). Absent = `store`'s objects.
   */
  policyStore?: StoreConfig;
  /** Why the policy objects come from where they do (logged once at start). */
  policySourceReason?: string;
  /** /healthz and /readyz on 127.0.0.1:PORT (0 = any free port); absent = no endpoint. */
  healthPort?: number;
  /** Readiness: probe the store when it has been quiet this long (ms, default 5000); stale after 3x. */
  storeProbeMs?: number;
}

export interface RunningAgent {
  service: AgentService;
  server: Server;
  /** Pod MTU (after ready()). */
  readonly mtu: number;
  /** Resolves when the node has joined and enforces policy; rejects when it never can (e.g. cluster not initialized). */
  ready: Promise<JoinResult | null>;
  membership?: Membership;
  policy?: PolicyEnforcement;
  /** The bound health port, when serving. */
  readonly healthPort: number | null;
  stop(): Promise<void>;
}

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(v: string): v is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(v);
}

/** JSON lines on stderr at `level` (default: $WEFT_LOG_LEVEL, else info). */
export function makeLogger(level?: LogLevel): Logger {
  const env = process.env.WEFT_LOG_LEVEL;
  const lvl = level ?? (env !== undefined && isLogLevel(env) ? env : "info");
  return pino({ base: { component: "agent" }, level: lvl }, pino.destination(2));
}

/** The agent will not start here; nothing has been changed. */
export class AgentRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AgentRefused";
  }
}

export async function startAgent(
  cfg: AgentConfig,
  log: Logger = makeLogger(),
  kernel: PodKernel = createPodKernel(cfg.kernel ?? "netlink"),
): Promise<RunningAgent> {
  // First of all, before any file, sysctl, link or rule: the machine's own namespace only on a
  // node declared real (its first change would be host-wide forwarding) ...
  if (!cfg.realNode && inHostNetns()) {
    throw new AgentRefused(
      "refusing to run in the machine's own network namespace (that of PID 1): start the agent inside a test network namespace, or pass --real-node on a node weft is meant to own (its DaemonSet does)",
    );
  }
  // ... and one agent per network namespace, whatever its socket or state dir: a second one
  // would take the first one's pods for orphans and fight over its routes and rules.
  const nsLock = await lockNetns({ socket: cfg.socket, stateDir: cfg.stateDir }).catch((e: unknown) => {
    throw new AgentRefused(e instanceof Error ? e.message : String(e));
  });
  try {
    return await startLocked(cfg, log, kernel, nsLock.release);
  } catch (e) {
    await nsLock.release();
    throw e;
  }
}

async function startLocked(
  cfg: AgentConfig,
  log: Logger,
  kernel: PodKernel,
  unlock: () => Promise<void>,
): Promise<RunningAgent> {
  // A second agent on a live socket (in another namespace) must not reconcile either.
  await removeStaleSocket(cfg.socket);
  const ipam = new IpamStore(cfg.stateDir);
  await kernel.enableForwarding();
  const underlayMtu = () => kernel.underlayMtu((n) => HOST_IF_PATTERN.test(n));

  if (!cfg.store) {
    const mtu = cfg.mtu ?? (await underlayMtu()) - (cfg.backendOverhead ?? 0);
    const service = new AgentService({ node: cfg.node, pools: cfg.pools ?? [], mtu, store: ipam, kernel, log });
    const rec = await service.reconcile();
    const server = await serveAfterQueuedDels(cfg.socket, log, service);
    const health =
      cfg.healthPort === undefined
        ? null
        : await startHealthServer(
            { live: () => (server.listening ? null : "the CNI socket server is not listening"), ready: () => null },
            { port: cfg.healthPort, log },
          ).catch(async (e: unknown) => {
            await new Promise<void>((r) => server.close(() => r()));
            ipam.close();
            throw e;
          });
    log.info(
      { node: cfg.node, socket: cfg.socket, podCidrs: (cfg.pools ?? []).map((p) => p.cidr), mtu, ...rec },
      "agent ready",
    );
    return {
      service,
      server,
      mtu,
      ready: Promise.resolve(null),
      healthPort: health?.port ?? null,
      stop: async () => {
        await health?.close();
        await new Promise<void>((r) => server.close(() => r()));
        ipam.close();
        await unlock();
      },
    };
  }

  const store = openStore(cfg.store);
  // Policy objects: the store's own, or a Kubernetes API's beside a store that keeps only leases.
  const policyStore = cfg.policyStore ? openStore(cfg.policyStore) : undefined;
  const objects = (policyStore ?? store).objects;
  log.info(
    {
      policySource: policyStore ? "kubernetes" : "store",
      from: (policyStore ?? store).description,
      ...(cfg.policySourceReason ? { why: cfg.policySourceReason } : {}),
    },
    "network policies, pods and namespaces come from here",
  );
  let policy: PolicyEnforcement | undefined;
  let stopping = false;
  const service: AgentService = new AgentService({
    node: cfg.node,
    pools: [],
    mtu: cfg.mtu ?? 1500,
    store: ipam,
    kernel,
    log,
    admit: async (pod) => {
      await membership.admit(pod);
      if (!policy)
        throw new AgentFailure(AgentCode.TryAgainLater, "network policy enforcement is starting; try again later");
    },
    unavailable: () => membership.unavailable() ?? (policy ? null : "network policy enforcement is starting"),
    policy: {
      podAdded: (p) => policy!.controller.podAdded(p),
      podRemoved: async (hostIf) => {
        const c = policy?.controller;
        if (!c) return;
        for (const p of c.localPods().filter((x) => x.ifname === hostIf))
          await c.podRemoved({ namespace: p.namespace, name: p.name, ifname: hostIf });
      },
    },
    onPodsChanged: () => membership.podsChanged(),
  });
  const single = cfg.store.kind === "local" ? { pools: cfg.pools ?? [] } : undefined;
  const underlay = cfg.underlay ?? (await detectUnderlay(kernel));
  // Peer routes take the same door as pods; a netlink socket that cannot be opened is an error
  // in the log and in the node's report, not a quiet switch to iproute2.
  const peerWrites = new PeerWriteChannel(cfg.kernel ?? "netlink", (reason) =>
    log.error({ err: reason }, "netlink unavailable for peer writes"),
  );
  const membership: Membership = new Membership({
    store,
    node: cfg.node,
    underlay,
    stateDir: cfg.stateDir,
    kernel: { peerWrites },
    ...(single ? { single, singleHostMtu: underlayMtu } : {}),
    ...(cfg.mtu !== undefined ? { mtu: cfg.mtu } : {}),
    ...(cfg.leaseTtlSeconds !== undefined ? { ttlSeconds: cfg.leaseTtlSeconds } : {}),
    ...(cfg.subnetGraceSeconds !== undefined ? { subnetGraceSeconds: cfg.subnetGraceSeconds } : {}),
    ...(cfg.handoverSeconds !== undefined ? { handoverSeconds: cfg.handoverSeconds } : {}),
    ...(cfg.resyncMs !== undefined ? { resyncMs: cfg.resyncMs } : {}),
    log,
    pods: () => ({ count: service.podCount(), stranded: service.strandedCount() }),
    onNetwork: (n) => {
      service.setNetwork(n);
      log.info({ podCidrs: n.pools.map((p) => p.cidr), mtu: n.mtu }, "pod network");
    },
  });

  const rec = await service.reconcile();
  const server = await serveAfterQueuedDels(cfg.socket, log, service);
  let joined = false;
  let joinError: string | undefined;
  const storeProbe = new StoreProbe({
    read: () => store.getClusterSettings(),
    lastContact: () => membership.lastStoreContact,
    ...(cfg.storeProbeMs !== undefined ? { intervalMs: cfg.storeProbeMs } : {}),
  });
  // Policies from a Kubernetes API beside the store: that API must answer too (not fail open). A
  // NotFound is an answer; probed less often, as every node asks the same API server.
  const policyProbe = policyStore
    ? new StoreProbe({
        read: () =>
          policyStore.objects.get({ kind: "Namespace", name: "default" }).catch((e: unknown) => {
            if (!isStoreError(e, "NotFound")) throw e;
          }),
        lastContact: () => undefined,
        intervalMs: 10_000,
        name: "the Kubernetes API (network policies)",
      })
    : undefined;
  let health: HealthServer | null = null;
  if (cfg.healthPort !== undefined) {
    try {
      health = await startHealthServer(
        {
          live: () => (server.listening ? null : "the CNI socket server is not listening"),
          ready: () => {
            if (stopping) return "the agent is stopping";
            if (joinError) return `the agent cannot join the cluster: ${joinError}`;
            if (!joined) return membership.unavailable() ?? "setting up the pod network and network policy";
            return membership.unavailable() ?? storeProbe.problem() ?? policyProbe?.problem() ?? null;
          },
        },
        { port: cfg.healthPort, log },
      );
    } catch (e) {
      await new Promise<void>((r) => server.close(() => r()));
      ipam.close();
      await store.close().catch(() => undefined);
      await policyStore?.close().catch(() => undefined);
      throw e;
    }
  }
  // msSinceStart: from the process' start (performance.timeOrigin), module loading included.
  log.info(
    {
      node: cfg.node,
      socket: cfg.socket,
      store: store.description,
      underlay,
      ...rec,
      msSinceStart: Math.round(performance.now()),
    },
    "agent serving; joining the cluster",
  );

  const ready = (async (): Promise<JoinResult> => {
    const joined = await membership.join();
    if (stopping) throw new Error("the agent stopped while joining");
    await applyMasquerade(joined.settings, log);
    policy = await startPolicyEnforcement({
      node: cfg.node,
      objects,
      log,
      localPods: () => localPodsOf(ipam.list()),
      ...(cfg.metricsPort !== undefined ? { metricsPort: cfg.metricsPort } : {}),
      denyLog: cfg.denyLog === true,
      // The bgp backend's session gauges beside the policy metrics (loaded with prom-client, only then).
      ...(joined.settings.backend === "bgp"
        ? {
            registerMetrics: async (registry) =>
              (await import("./bgp-metrics.js")).registerBgpMetrics(registry, () => membership.report()),
          }
        : {}),
    });
    log.info(
      {
        node: cfg.node,
        socket: cfg.socket,
        podCidrs: joined.podCIDRs,
        mtu: joined.mtu,
        backend: single ? "none (single host)" : joined.settings.backend,
        peers: joined.peers,
        backendSetupChanges: joined.setupChanges,
        firstSyncChanges: joined.firstSyncChanges,
        msSinceStart: Math.round(performance.now()),
        ...(policy.metricsPort !== null ? { metricsPort: policy.metricsPort } : {}),
      },
      "agent ready",
    );
    return joined;
  })();
  ready.then(
    () => {
      joined = true;
      if (!stopping) {
        storeProbe.start();
        policyProbe?.start();
      }
    },
    (e: unknown) => {
      joinError = e instanceof Error ? e.message : String(e);
    },
  );

  const agent: RunningAgent = {
    service,
    server,
    ready,
    membership,
    get mtu() {
      return service.network.mtu;
    },
    get policy() {
      return policy;
    },
    healthPort: health?.port ?? null,
    stop: async () => {
      stopping = true;
      storeProbe.stop();
      policyProbe?.stop();
      await health?.close();
      await new Promise<void>((r) => server.close(() => r()));
      await policy?.stop();
      await membership.stop();
      await policyStore?.close().catch(() => undefined);
      ipam.close();
      await unlock();
    },
  };
  return agent;
}

/** DELs queued while no agent ran (src/agent/ops/del-queue.ts) go first, then the socket opens. */
async function serveAfterQueuedDels(socket: string, log: Logger, service: AgentService): Promise<Server> {
  const queue = new DelQueue({ socket, log, handle: (r) => service.handle(r) });
  await queue.replayAll();
  const server = await listen({ path: socket, log, handle: queue.guard((r) => service.handle(r)) });
  // A plugin that found no socket a moment ago may have queued since the first pass.
  void queue.replayAll();
  return server;
}
