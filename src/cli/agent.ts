// `weft agent`: the node agent in the foreground (see src/agent/run.ts).
import type { Command } from "commander";
import { InvalidCidr, parsePool, type Pool } from "../ipam/addr.js";
import { makeLogger, startAgent } from "../agent/run.js";
import { UserError } from "./errors.js";
import { DEFAULT_SOCKET } from "./install-cni.js";

function parsePodCidrs(value: string): Pool[] {
  const pools: Pool[] = [];
  for (const part of value.split(",").map((s) => s.trim()).filter(Boolean)) {
    try { pools.push(parsePool(part)); } catch (e) {
      throw new UserError(`--pod-cidr: ${e instanceof InvalidCidr ? e.message : String(e)}`);
    }
  }
  if (pools.length === 0) throw new UserError("--pod-cidr: give one IPv4 and/or one IPv6 CIDR");
  if (pools.filter((p) => p.family === 4).length > 1 || pools.filter((p) => p.family === 6).length > 1) {
    throw new UserError("--pod-cidr: at most one IPv4 and one IPv6 CIDR");
  }
  return pools.sort((a, b) => a.family - b.family);
}

export function registerAgent(program: Command): void {
  program
    .command("agent")
    .description("run the node agent in the foreground: wires pods and serves the CNI plugin on a unix socket")
    .requiredOption("--node <name>", "this node's name")
    .option("--store <kind>", "where cluster state lives: local (embedded store in --state-dir)", "local")
    .requiredOption("--state-dir <dir>", "directory for the agent's crash-safe state")
    .option("--socket <path>", "unix socket the CNI plugin talks to (created 0600)", DEFAULT_SOCKET)
    .option("--pod-cidr <cidr[,cidr]>", "this node's pod CIDRs: one IPv4 and/or one IPv6")
    .option("--mtu <n>", "pod MTU (default: underlay MTU minus the backend's overhead)")
    .action(async (o: { node: string; store: string; stateDir: string; socket: string; podCidr?: string; mtu?: string }) => {
      if (o.store !== "local") throw new UserError(`--store ${o.store}: only "local" is supported by this agent so far`);
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/.test(o.node)) throw new UserError(`--node "${o.node}": use letters, digits, '.', '_', '-'`);
      if (!o.podCidr) throw new UserError("--pod-cidr is required with --store local");
      const pools = parsePodCidrs(o.podCidr);
      let mtu: number | undefined;
      if (o.mtu !== undefined) {
        mtu = Number(o.mtu);
        if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new UserError(`--mtu ${o.mtu}: must be an integer from 68 to 65535`);
      }
      const log = makeLogger();
      const agent = await startAgent({ node: o.node, stateDir: o.stateDir, socket: o.socket, pools, ...(mtu ? { mtu } : {}) }, log);
      const shutdown = (sig: string) => {
        log.info({ signal: sig }, "stopping; pods stay as they are");
        void agent.stop().finally(() => process.exit(0));
      };
      process.once("SIGTERM", () => shutdown("SIGTERM"));
      process.once("SIGINT", () => shutdown("SIGINT"));
    });
}
