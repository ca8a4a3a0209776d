// Runs `weft agent` inside a test namespace (nsenter --net, which execs node in place, so the
// PID we hold is the agent's), waits for its socket, and stops it by PID (SIGTERM or SIGKILL).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { callAgentUnchecked } from "../agent-api/client.js";
import type { AgentRequestInput, AgentResponse } from "../agent-api/schema.js";

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");

export interface TestAgentOptions {
  /** Path of the namespace the agent runs in (its "host"). */
  netns: string;
  podCidr: string;
  node?: string;
  /** Kept across restarts when given; a fresh temp dir otherwise. */
  stateDir?: string;
  socket?: string;
  mtu?: number;
  extraArgs?: string[];
  /** Milliseconds to wait for the socket. */
  readyTimeoutMs?: number;
  /** Internal: a temp dir an earlier start made, removed by cleanup() of the restarted agent. */
  ownedDir?: string;
}

export interface TestAgent {
  pid: number;
  socket: string;
  stateDir: string;
  /** Everything the agent wrote to stderr (pino JSON lines). */
  logs(): string;
  request(req: AgentRequestInput | Record<string, unknown>): Promise<AgentResponse>;
  /** Sends the signal to the agent's PID and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  /** The same agent, started again on the same state dir and socket. */
  restart(): Promise<TestAgent>;
  /** Stops the agent (SIGTERM) and removes the temp dirs this helper made. */
  cleanup(): Promise<void>;
}

const running = new Set<ChildProcess>();
let hook = false;

export async function startTestAgent(o: TestAgentOptions): Promise<TestAgent> {
  if (!hook) {
    hook = true;
    process.on("exit", () => {
      for (const c of running)
        if (c.pid && c.exitCode === null)
          try {
            process.kill(c.pid, "SIGKILL");
          } catch {
            /* gone */
          }
    });
  }
  const madeDir = o.ownedDir ?? (o.stateDir ? undefined : mkdtempSync(join(tmpdir(), "weft-agent-")));
  const stateDir = o.stateDir ?? join(madeDir!, "state");
  // Without a state dir of our own, the caller owns the state dir and must give the socket too.
  if (!madeDir && !o.socket) throw new Error("startTestAgent: give socket together with stateDir");
  const socket = o.socket ?? join(madeDir!, "run", "agent.sock");
  const args = [
    `--net=${o.netns}`,
    "--",
    process.execPath,
    CLI,
    "agent",
    "--node",
    o.node ?? "test-node",
    "--store",
    "local",
    "--state-dir",
    stateDir,
    "--socket",
    socket,
    "--pod-cidr",
    o.podCidr,
    ...(o.mtu ? ["--mtu", String(o.mtu)] : []),
    ...(o.extraArgs ?? []),
  ];
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const child = spawn("nsenter", args, { stdio: ["ignore", "ignore", "pipe"], env });
  running.add(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<number | null>((r) =>
    child.on("exit", (code, sig) => {
      running.delete(child);
      r(code ?? (sig ? -1 : null));
    }),
  );

  const deadline = Date.now() + (o.readyTimeoutMs ?? 15_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`agent exited before it was ready: ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
    // Ready = this agent logged so (another agent may answer on the same path) and answers.
    if (stderr.includes('"msg":"agent ready"') && existsSync(socket)) {
      const r = await callAgentUnchecked(socket, { op: "status", network: "" }, 2000).catch(() => null);
      if (r) break;
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(
        `agent not ready after ${o.readyTimeoutMs ?? 15_000} ms: ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }

  const agent: TestAgent = {
    pid: child.pid!,
    socket,
    stateDir,
    logs: () => stderr,
    request: (req) => callAgentUnchecked(socket, req),
    kill: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, signal);
      return exited;
    },
    restart: async () => {
      await agent.kill("SIGTERM");
      return startTestAgent({ ...o, stateDir, socket, ...(madeDir ? { ownedDir: madeDir } : {}) });
    },
    cleanup: async () => {
      await agent.kill("SIGTERM");
      if (madeDir) rmSync(madeDir, { recursive: true, force: true });
    },
  };
  return agent;
}
