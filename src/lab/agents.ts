// One weft agent per lab node, run inside the node's namespace as a real node would run it:
// detached, in its own process group, logging to DIR/nX/agent.log.
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { callAgent } from "../agent-api/client.js";
import { netnsPathOf } from "./names.js";
import { childEnv, isAlive, logTail, spawnDetached } from "./procs.js";
import type { LabNode } from "./state.js";

export const CLI_MAIN = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");
/** The contract's entry point (it carries the agent's node flags, see bin/weft). */
export const WEFT_BIN = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "bin", "weft");

export interface AgentCaps {
  /** Cluster mode on etcd (--store etcd --etcd-endpoints). */
  etcd: boolean;
  /** Cluster mode on a kube-apiserver (--store kubernetes --kubeconfig). */
  kubernetes: boolean;
  /** --underlay-address: the node's underlay address(es) given, not guessed. */
  underlayFlag: boolean;
}

/** What this build's agent can do, from its --help. */
export function agentCaps(): AgentCaps {
  const r = spawnSync(process.execPath, [CLI_MAIN, "agent", "--help"], {
    encoding: "utf8",
    env: childEnv(),
    timeout: 20_000,
  });
  const help = r.status === 0 ? r.stdout : "";
  return {
    etcd: help.includes("--etcd-endpoints"),
    kubernetes: help.includes("--kubeconfig"),
    underlayFlag: help.includes("--underlay-address"),
  };
}

/** "etcd" when this build's agent has its cluster mode (--etcd-endpoints), else "local". */
export function detectAgentMode(): "etcd" | "local" {
  return agentCaps().etcd ? "etcd" : "local";
}

export type AgentMode = "etcd" | "kubernetes" | "local";

/** A node's kubeconfig (server https://127.0.0.1:6443, through the node's forwarder). */
export function nodeKubeconfig(node: LabNode): string {
  return join(node.dir, "kubeconfig");
}

/** etcdFlags: --etcd-endpoints (the members' unix sockets) and the TLS flags (etcd.ts labEtcdFlags). */
export function agentArgv(node: LabNode, mode: AgentMode, etcdFlags: readonly string[], caps?: AgentCaps): string[] {
  const base = [
    "nsenter",
    `--net=${netnsPathOf(node.netns)}`,
    "--",
    WEFT_BIN,
    "agent",
    "--node",
    node.name,
    "--state-dir",
    join(node.dir, "state"),
    "--socket",
    node.socket,
  ];
  // The lab knows each node's underlay addresses; say them rather than have the agent guess.
  if (caps?.underlayFlag) base.push("--underlay-address", [node.ipv4, ...(node.ipv6 ? [node.ipv6] : [])].join(","));
  // The lab's objects are in its etcd (weft apply): a $KUBECONFIG in the user's shell must not
  // make the agents read policies from some other cluster.
  if (mode === "etcd") return [...base, "--store", "etcd", ...etcdFlags, "--policy-source", "store"];
  if (mode === "kubernetes") return [...base, "--store", "kubernetes", "--kubeconfig", nodeKubeconfig(node)];
  return [...base, "--store", "local", "--pod-cidr", (node.podCidrs ?? []).join(",")];
}

export function startAgent(node: LabNode, mode: AgentMode, etcdFlags: readonly string[], caps?: AgentCaps): LabNode {
  if (isAlive(node.agent)) return node;
  mkdirSync(join(node.dir, "state"), { recursive: true, mode: 0o700 });
  const agent = spawnDetached(agentArgv(node, mode, etcdFlags, caps), { log: join(node.dir, "agent.log") });
  return { ...node, agent };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until the agent answers STATUS with "ready" (joined the cluster, policy enforcement on). */
export async function waitAgent(node: LabNode, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = "no answer on its socket yet";
  for (;;) {
    if (!isAlive(node.agent))
      throw new Error(`the agent of ${node.name} exited: ${logTail(join(node.dir, "agent.log"))}`);
    try {
      const r = await callAgent(node.socket, { op: "status", network: "weft" }, 2000);
      if (r.ok) return;
      last = `it answers STATUS with "${r.msg}"`;
    } catch {
      // not listening yet
    }
    if (Date.now() > until)
      throw new Error(
        `the agent of ${node.name} is not ready after ${timeoutMs} ms (${last}): ${logTail(join(node.dir, "agent.log"))}`,
      );
    await sleep(50);
  }
}
