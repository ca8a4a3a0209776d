// How agents inside node namespaces reach the lab's kube-apiserver, which listens on the
// machine's 127.0.0.1 (a node namespace has its own loopback): one socat on the machine turns a
// unix socket in the lab directory into the apiserver's TCP port, and one socat per node listens
// on the node's own 127.0.0.1:6443 and forwards to that socket. TLS runs end to end through both
// (the serving certificate is for 127.0.0.1), so the node kubeconfig only changes the server URL.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { netnsPathOf } from "./names.js";
import { isAlive, spawnDetached, type ProcRef } from "./procs.js";

export const NODE_API_PORT = 6443;

export function apiSocket(labDir: string): string {
  return join(labDir, "apiserver.sock");
}

/** The machine-side forwarder: DIR/apiserver.sock -> the apiserver's 127.0.0.1 port. */
export function startRootProxy(labDir: string, apiserverUrl: string, have: ProcRef | undefined): ProcRef {
  if (isAlive(have)) return have!;
  const sock = apiSocket(labDir);
  rmSync(sock, { force: true });
  const port = new URL(apiserverUrl).port;
  return spawnDetached(["socat", `UNIX-LISTEN:${sock},fork,mode=600`, `TCP:127.0.0.1:${port}`], {
    log: join(labDir, "apiserver-proxy.log"),
  });
}

/** The node-side forwarder: 127.0.0.1:6443 in the node's namespace -> DIR/apiserver.sock. */
export function startNodeProxy(labDir: string, nodeNetns: string, nodeDir: string, have: ProcRef | undefined): ProcRef {
  if (isAlive(have)) return have!;
  return spawnDetached(
    [
      "nsenter",
      `--net=${netnsPathOf(nodeNetns)}`,
      "--",
      "socat",
      `TCP-LISTEN:${NODE_API_PORT},bind=127.0.0.1,reuseaddr,fork`,
      `UNIX-CONNECT:${apiSocket(labDir)}`,
    ],
    { log: join(nodeDir, "apiserver-proxy.log") },
  );
}

/** The lab kubeconfig with the server a node reaches: https://127.0.0.1:6443. */
export function writeNodeKubeconfig(labKubeconfig: string, file: string): void {
  const cfg = parse(readFileSync(labKubeconfig, "utf8")) as { clusters: Array<{ cluster: { server: string } }> };
  for (const c of cfg.clusters) c.cluster.server = `https://127.0.0.1:${NODE_API_PORT}`;
  writeFileSync(file, stringify(cfg), { mode: 0o600 });
}
