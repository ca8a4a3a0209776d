// "Who is calling?": a TCP server in a test namespace that answers each connection with the peer
// address it sees (what a server on the internet would log), and a client that asks it. This is
// how tests check SNAT from the receiver's side.
import { type ChildProcess, spawn } from "node:child_process";
import { runStatus } from "../kernel/exec.js";

export interface PeerAddrServer {
  stop(): Promise<void>;
}

const SERVER = `
import { createServer } from "node:net";
const [host, port] = process.argv.slice(1);
createServer((s) => s.end(s.remoteAddress.replace(/^::ffff:/, "") + "\\n")).listen(Number(port), host, () => console.log("listening"));
`;

/** Starts the server on host:port inside netns; resolves once it listens. */
export async function startPeerAddrServer(netns: string, host: string, port: number): Promise<PeerAddrServer> {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const child: ChildProcess = spawn(
    "nsenter",
    [`--net=${netns}`, "--", process.execPath, "--input-type=module", "-e", SERVER, "--", host, String(port)],
    { stdio: ["ignore", "pipe", "pipe"], env },
  );
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      if (d.includes("listening")) resolve();
    });
    child.once("exit", () => reject(new Error(`peer-address server exited: ${err}`)));
  });
  return {
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await gone;
    },
  };
}

/** Connects from netns to host:port and returns the address the server saw, or null when it cannot connect. */
export async function peerAddrSeenBy(netns: string, host: string, port: number): Promise<string | null> {
  const addr = host.includes(":") ? `[${host}]` : host;
  const r = await runStatus(["socat", "-T", "3", "-u", `TCP:${addr}:${port},connect-timeout=3`, "STDOUT"], { netns });
  return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}
