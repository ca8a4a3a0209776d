// A minimal client for the agent's socket: one request, one response.
import { connect } from "node:net";
import type { AgentRequest, AgentResponse } from "./protocol.js";

export class AgentUnreachable extends Error {
  constructor(readonly socketPath: string, cause: string) {
    super(`cannot reach the weft agent at ${socketPath}: ${cause}`);
    this.name = "AgentUnreachable";
  }
}

export function request(socketPath: string, req: AgentRequest | Record<string, unknown>, timeoutMs = 120_000): Promise<AgentResponse> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = "";
    const timer = setTimeout(() => { sock.destroy(); reject(new AgentUnreachable(socketPath, `no answer within ${timeoutMs} ms`)); }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(JSON.stringify(req) + "\n"));
    sock.on("data", (d: string) => (buf += d));
    sock.on("error", (e: NodeJS.ErrnoException) => { clearTimeout(timer); reject(new AgentUnreachable(socketPath, e.code ?? e.message)); });
    sock.on("close", () => {
      clearTimeout(timer);
      const line = buf.split("\n")[0];
      if (!line) return reject(new AgentUnreachable(socketPath, "connection closed without an answer"));
      try { resolve(JSON.parse(line) as AgentResponse); } catch { reject(new AgentUnreachable(socketPath, "answer is not JSON")); }
    });
  });
}
