// Runs forwarded plugin calls (src/agent-api/frame.ts) inside the agent: the same TypeScript plugin
// code the standalone plugin runs (src/plugin/plugin.ts), given the runtime's environment and
// stdin. Requests for this agent skip the socket round trip; a config that names another agent's
// socket is still sent there, exactly as the standalone plugin would.
import { resolve } from "node:path";
import { callAgent } from "../agent-api/client.js";
import { AgentTimeout } from "../agent-api/errors.js";
import type { ForwardedCall } from "../agent-api/frame.js";
import type { AgentResponse } from "../agent-api/schema.js";
import { runPlugin, type AgentTransport, type PluginOutcome } from "../plugin/plugin.js";

export interface PluginHostOptions {
  /** This agent's socket path. */
  socket: string;
  /** Validates and serves one request, as a request arriving on the socket is served. */
  dispatch: (value: unknown) => Promise<AgentResponse>;
}

export type PluginHost = (call: ForwardedCall) => Promise<PluginOutcome>;

export function pluginHost(o: PluginHostOptions): PluginHost {
  const own = resolve(o.socket);
  const transport: AgentTransport = (socketPath, req, timeoutMs) =>
    resolve(socketPath) === own
      ? withTimeout(o.dispatch(req), socketPath, timeoutMs)
      : callAgent(socketPath, req, timeoutMs);
  return (call) =>
    runPlugin({ env: call.env, readStdin: () => Promise.resolve(call.stdin), stdinIsTty: false, transport });
}

/** The plugin's timeout holds in process too: the runtime gets 11 rather than waiting forever. */
function withTimeout(p: Promise<AgentResponse>, socketPath: string, ms: number): Promise<AgentResponse> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AgentTimeout(socketPath, ms, true)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
