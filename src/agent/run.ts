// Starts the node agent: store, kernel setup, crash reconcile, then the socket. SIGTERM/SIGINT
// close the socket and exit; pods stay wired (the agent owns no pod state in memory).
import type { Server } from "node:net";
import { pino, type Logger } from "pino";
import { type Pool } from "../ipam/addr.js";
import { IpamStore } from "../ipam/store.js";
import { IprouteKernel } from "../kernel/iproute.js";
import { NetlinkKernel } from "../kernel/netlink/kernel.js";
import type { PodKernel } from "../kernel/podnet.js";
import { HOST_IF_PATTERN } from "./naming.js";
import { listen, removeStaleSocket } from "./server.js";
import { AgentService } from "./service.js";

export interface AgentConfig {
  node: string;
  stateDir: string;
  socket: string;
  pools: Pool[];
  /** Explicit pod MTU (--mtu); otherwise the underlay's minus the backend overhead. */
  mtu?: number;
  /** Bytes the backend's encapsulation takes (0 for routed, single host). */
  backendOverhead?: number;
}

export interface RunningAgent {
  service: AgentService;
  server: Server;
  mtu: number;
  stop(): Promise<void>;
}

export function makeLogger(): Logger {
  return pino({ base: { component: "agent" }, level: process.env.WEFT_LOG_LEVEL ?? "info" }, pino.destination(2));
}

/**
 * The pod kernel: iproute2 child processes by default; WEFT_KERNEL=netlink selects rtnetlink
 * straight from the agent (about 2 ms per ADD against about 9 ms), which produces the same kernel
 * state (kernel/netlink's tests compare the two) but is not yet safe under concurrent ADDs.
 */
export function defaultPodKernel(): PodKernel {
  return process.env.WEFT_KERNEL === "netlink" ? new NetlinkKernel() : new IprouteKernel();
}

export async function startAgent(cfg: AgentConfig, log: Logger = makeLogger(), kernel: PodKernel = defaultPodKernel()): Promise<RunningAgent> {
  // First of all: a second agent on a live socket must not reconcile (it would take the
  // first one's pods for orphans).
  await removeStaleSocket(cfg.socket);
  const store = new IpamStore(cfg.stateDir);
  await kernel.enableForwarding();
  const mtu = cfg.mtu ?? (await kernel.underlayMtu((n) => HOST_IF_PATTERN.test(n))) - (cfg.backendOverhead ?? 0);
  const service = new AgentService({ node: cfg.node, pools: cfg.pools, mtu, store, kernel, log });
  const rec = await service.reconcile();
  const server = await listen({ path: cfg.socket, log, handle: (r) => service.handle(r) });
  log.info({ node: cfg.node, socket: cfg.socket, podCidrs: cfg.pools.map((p) => p.cidr), mtu, ...rec }, "agent ready");
  return {
    service, server, mtu,
    stop: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      store.close();
    },
  };
}
