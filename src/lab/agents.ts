// One weft agent per lab node, run inside the node's namespace as a real node would run it:
// detached, in its own process group, logging to DIR/nX/agent.log.
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "../agent/client.js";
import { netnsPathOf } from "./names.js";
import { childEnv, isAlive, logTail, spawnDetached } from "./procs.js";
import type { LabNode } from "./state.js";

export const CLI_MAIN = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");

/** "etcd" when this build's agent has its cluster mode (--etcd-endpoints), else "local". */
export function detectAgentMode(): "etcd" | "local" {
  const r = spawnSync(process.execPath, [CLI_MAIN, "agent", "--help"], { encoding: "utf8", env: childEnv(), timeout: 20_000 });
  return r.status === 0 && r.stdout.includes("--etcd-endpoints") ? "etcd" : "local";
}

export function agentArgv(node: LabNode, mode: "etcd" | "local", etcdUnixEndpoints: readonly string[]): string[] {
  const base = [
    "nsenter", `--net=${netnsPathOf(node.netns)}`, "--",
    process.execPath, CLI_MAIN, "agent", "--node", node.name,
    "--state-dir", join(node.dir, "state"), "--socket", node.socket,
  ];
  if (mode === "etcd") return [...base, "--store", "etcd", "--etcd-endpoints", etcdUnixEndpoints.join(",")];
  return [...base, "--store", "local", "--pod-cidr", (node.podCidrs ?? []).join(",")];
}

export function startAgent(node: LabNode, mode: "etcd" | "local", etcdUnixEndpoints: readonly string[]): LabNode {
  if (isAlive(node.agent)) return node;
  mkdirSync(join(node.dir, "state"), { recursive: true, mode: 0o700 });
  const agent = spawnDetached(agentArgv(node, mode, etcdUnixEndpoints), { log: join(node.dir, "agent.log") });
  return { ...node, agent };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until the agent answers a STATUS request on its socket. */
export async function waitAgent(node: LabNode, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (!isAlive(node.agent)) throw new Error(`the agent of ${node.name} exited: ${logTail(join(node.dir, "agent.log"))}`);
    try {
      await request(node.socket, { op: "status", network: "weft" }, 2000);
      return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`the agent of ${node.name} did not answer on ${node.socket} within ${timeoutMs} ms: ${logTail(join(node.dir, "agent.log"))}`);
    await sleep(50);
  }
}
