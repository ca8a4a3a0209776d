// Starts the node agent. Order matters:
//   0. before anything is changed: refuse the machine's own network namespace unless realNode,
//      and refuse a namespace another live agent serves (the namespace lock, held for life)
//   1. refuse if a live agent holds the socket; open the IPAM state; enable forwarding
//   2. roll back half-made ADDs (never touching ready pods)
//   3. serve the socket: DEL works from here on; ADD answers "try again later" (11) until ready
//   4. join the cluster (store, lease, subnets, backend, peers) and start policy enforcement with
//      every wired pod (it adopts the previous agent's rules in one atomic replace), then "agent ready".
// SIGTERM/SIGINT close the socket and exit; pods, routes and rules stay (the agent owns no pod
// state in memory), and the node lease runs out by its TTL unless a new agent takes it over.
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
import { Membership, type JoinResult } from "./cluster.js";
import { AgentCode, AgentFailure } from "./codes.js";
import { lockNetns } from "./locks.js";
import { HOST_IF_PATTERN } from "./naming.js";
import { listen, removeStaleSocket } from "./server.js";
import { AgentService, localPodsOf } from "./service.js";
import { detectUnderlay } from "./underlay.js";
import { DelQueue } from "./ops/del-queue.js";

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
  stop(): Promise<void>;
}

export function makeLogger(): Logger {
  return pino({ base: { component: "agent" }, level: process.env.WEFT_LOG_LEVEL ?? "info" }, pino.destination(2));
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
    log.info(
      { node: cfg.node, socket: cfg.socket, podCidrs: (cfg.pools ?? []).map((p) => p.cidr), mtu, ...rec },
      "agent ready",
    );
    return {
      service,
      server,
      mtu,
      ready: Promise.resolve(null),
      stop: async () => {
        await new Promise<void>((r) => server.close(() => r()));
        ipam.close();
        await unlock();
      },
    };
  }

  const store = openStore(cfg.store);
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
    policy = await startPolicyEnforcement({
      node: cfg.node,
      objects: store.objects,
      log,
      localPods: () => localPodsOf(ipam.list()),
      ...(cfg.metricsPort !== undefined ? { metricsPort: cfg.metricsPort } : {}),
      denyLog: cfg.denyLog === true,
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
  ready.catch(() => undefined);

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
    stop: async () => {
      stopping = true;
      await new Promise<void>((r) => server.close(() => r()));
      await policy?.stop();
      await membership.stop();
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
