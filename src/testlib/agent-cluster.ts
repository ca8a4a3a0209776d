// A test cluster: real etcd (on loopback, reached by the node namespaces through a unix socket
// bridge, as the lab's agents reach the lab etcd), node namespaces on a test underlay
// (src/backends/testing/topology.ts), and one real `weft agent --store etcd` per node.
// Everything goes with destroy(), also when a test fails.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildTopology, type Topology, type TopoNode } from "../backends/testing/topology.js";
import { run, runStatus } from "../kernel/exec.js";
import { birdPaths, stopBird } from "../kernel/bird.js";
import { startEtcd, type EtcdCluster } from "../lab/etcd-process.js";
import { openStore } from "../store/index.js";
import { startKubeApiserver, writeKubeconfig, type KubeApiserver } from "../lab/apiserver-process.js";
import type { ClusterSettingsInput, ClusterStore } from "../store/types.js";
import { createNetns, type TestNetns } from "./netns.js";
import { callAgent } from "../agent-api/client.js";
import type { AgentResponse } from "../agent-api/schema.js";

export const AGENT_CLI = resolve(dirname(fileURLToPath(import.meta.url)), "agent-cli.js");

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface NodeAgent {
  readonly node: TopoNode;
  readonly socket: string;
  pid(): number | undefined;
  logs(): string;
  /** Log lines (parsed) since the agent's last start. */
  lines(): Record<string, unknown>[];
  start(): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface TestPod {
  ns: TestNetns;
  containerId: string;
  ips: string[];
  hostIf: string;
}

export interface TestCluster {
  /** The etcd the agents use (etcd mode) or the apiserver's own (kubernetes mode). */
  etcd: EtcdCluster;
  apiserver?: KubeApiserver;
  store: ClusterStore;
  topo: Topology;
  agents: NodeAgent[];
  /** The endpoint agents use. */
  endpoint: string;
  addPod(node: number, pod?: { namespace: string; name: string }): Promise<{ res: AgentResponse; pod?: TestPod }>;
  /** Runs the agent's own CLI (weft status, cluster init) in the machine's namespace. */
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  destroy(): Promise<void>;
}

export interface ClusterSpec {
  settings: ClusterSettingsInput;
  /** Underlay subnet of each node (see buildTopology). */
  subnets: number[];
  agentArgs?: string[];
  /** etcd members (default 1). */
  etcdMembers?: 1 | 3;
  /** Node lease TTL in seconds (default 2: expiry tests stay short). */
  leaseTtl?: number;
  /** The agents' store: etcd (default) or a real kube-apiserver (over its own etcd). */
  store?: "etcd" | "kubernetes";
  /** With the etcd store: a real kube-apiserver beside it too, given to the agents with --kubeconfig (policy objects). */
  kubeApi?: boolean;
}

export async function startCluster(spec: ClusterSpec): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), "weft-cluster-"));
  const children = new Set<ChildProcess>();
  const pods: TestNetns[] = [];
  let etcd: EtcdCluster | undefined;
  let apiserver: KubeApiserver | undefined;
  let topo: Topology | undefined;
  let store: ClusterStore | undefined;
  const destroy = async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await Promise.all(
      [...children].map((c) =>
        c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined,
      ),
    );
    // The bgp backend's BIRDs outlive their agents by design: ended by the PID each one's file records.
    for (const d of existsSync(dir) ? readdirSync(dir).filter((f) => /^state\d+$/.test(f)) : [])
      await stopBird(birdPaths(join(dir, d, "bird"))).catch(() => null);
    for (const p of pods) await p.remove();
    await store?.close().catch(() => undefined);
    await topo?.destroy();
    await apiserver?.stop();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => {
    for (const c of children)
      try {
        c.kill("SIGKILL");
      } catch {
        /* gone */
      }
  };
  process.once("exit", onExit);
  try {
    etcd = await startEtcd({ members: spec.etcdMembers ?? 1 });
    const kube = spec.store === "kubernetes";
    if (kube || spec.kubeApi) apiserver = await startKubeApiserver({ etcdServers: etcd.endpoints, baseDir: dir });
    store =
      kube && apiserver
        ? openStore({ kind: "kubernetes", kubeconfig: apiserver.kubeconfig })
        : openStore({ kind: "etcd", endpoints: etcd.endpoints });
    await store.initCluster(spec.settings);
    let apiSock = "";
    if (apiserver) {
      // Nodes reach the apiserver at their own 127.0.0.1:6443 -> unix socket -> the machine's loopback.
      apiSock = join(dir, "apiserver.sock");
      const b = spawn(
        "socat",
        [`UNIX-LISTEN:${apiSock},fork,mode=600`, `TCP:127.0.0.1:${new URL(apiserver.url).port}`],
        { stdio: "ignore" },
      );
      children.add(b);
      writeKubeconfig(
        join(dir, "node-kubeconfig"),
        "https://127.0.0.1:6443",
        apiserver.token,
        join(apiserver.dir, "serving.crt"),
      );
    }
    // Node namespaces have their own loopback: they reach each etcd member through a unix socket (a file).
    const socks: string[] = [];
    for (const [i, ep] of etcd.endpoints.entries()) {
      const sock = join(dir, `etcd${i}.sock`);
      const bridge = spawn("socat", [`UNIX-LISTEN:${sock},fork,mode=600`, `TCP:127.0.0.1:${new URL(ep).port}`], {
        stdio: "ignore",
      });
      children.add(bridge);
      for (let k = 0; k < 100 && !existsSync(sock); k++) await sleep(20);
      socks.push(`unix://${sock}`);
    }
    const endpoint = socks.join(",");
    topo = await buildTopology({ subnets: spec.subnets, podFamilies: [4] });
    if (apiserver) {
      for (const n of topo.nodes) {
        const f = spawn(
          "nsenter",
          [
            `--net=${n.netns}`,
            "--",
            "socat",
            "TCP-LISTEN:6443,bind=127.0.0.1,fork,reuseaddr",
            `UNIX-CONNECT:${apiSock}`,
          ],
          { stdio: "ignore" },
        );
        children.add(f);
      }
    }
    const storeArgs = kube
      ? ["--store", "kubernetes", "--kubeconfig", join(dir, "node-kubeconfig")]
      : [
          "--store",
          "etcd",
          "--etcd-endpoints",
          endpoint,
          ...(apiserver ? ["--kubeconfig", join(dir, "node-kubeconfig")] : []),
        ];
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const agents: NodeAgent[] = topo.nodes.map((node, i) => {
      let child: ChildProcess | undefined;
      let stderr = "";
      const socket = join(dir, `agent${i}.sock`);
      const a: NodeAgent = {
        node,
        socket,
        pid: () => child?.pid,
        logs: () => stderr,
        lines: () =>
          stderr
            .split("\n")
            .filter((l) => l.startsWith("{"))
            .map((l) => JSON.parse(l) as Record<string, unknown>),
        start: async () => {
          stderr = "";
          child = spawn(
            "nsenter",
            [
              `--net=${node.netns}`,
              "--",
              process.execPath,
              AGENT_CLI,
              "agent",
              "--node",
              node.name,
              ...storeArgs,
              "--state-dir",
              join(dir, `state${i}`),
              "--socket",
              socket,
              "--lease-ttl",
              String(spec.leaseTtl ?? 2),
              "--subnet-grace",
              "60",
              "--resync-interval",
              "1",
              ...(spec.agentArgs ?? []),
            ],
            { stdio: ["ignore", "ignore", "pipe"], env },
          );
          children.add(child);
          child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
          const c = child;
          for (const until = Date.now() + 45_000; !stderr.includes('"msg":"agent ready"');) {
            if (c.exitCode !== null || c.signalCode !== null)
              throw new Error(`agent ${node.name} exited: ${stderr.slice(-600)}`);
            if (Date.now() > until) throw new Error(`agent ${node.name} not ready: ${stderr.slice(-600)}`);
            await sleep(20);
          }
        },
        kill: async (signal = "SIGTERM") => {
          const c = child;
          if (!c || c.exitCode !== null || c.signalCode !== null) return;
          const gone = new Promise((r) => c.once("exit", r));
          c.kill(signal);
          await gone;
        },
      };
      return a;
    });
    for (const a of agents) await a.start();
    let n = 0;
    const cluster: TestCluster = {
      etcd,
      store,
      topo,
      agents,
      endpoint,
      ...(apiserver ? { apiserver } : {}),
      addPod: async (node, pod) => {
        const ns = await createNetns("pod");
        pods.push(ns);
        const containerId = `c${process.pid}x${n++}`;
        const args: Record<string, string> = pod ? { K8S_POD_NAMESPACE: pod.namespace, K8S_POD_NAME: pod.name } : {};
        const res = await callAgent(
          agents[node].socket,
          { op: "add", network: "weft", containerId, netns: ns.path, ifname: "eth0", args },
          60_000,
        );
        if (!res.ok || !res.result) return { res };
        return {
          res,
          pod: {
            ns,
            containerId,
            ips: (res.result.ips ?? []).map((x) => x.address.split("/")[0]),
            hostIf: res.result.interfaces![0].name,
          },
        };
      },
      cli: (args) => runStatus([process.execPath, AGENT_CLI, ...args]),
      destroy: async () => {
        process.off("exit", onExit);
        await destroy();
      },
    };
    return cluster;
  } catch (e) {
    process.off("exit", onExit);
    await destroy();
    throw e;
  }
}

/** Routes in a node namespace (main table, IPv4), as `ip -j route` gives them. */
export async function nodeRoutes(
  netns: string,
): Promise<{ dst: string; gateway?: string; dev?: string; protocol?: string }[]> {
  return JSON.parse(await run(["ip", "-j", "-4", "route", "show"], { netns })) as {
    dst: string;
    gateway?: string;
    dev?: string;
    protocol?: string;
  }[];
}

export async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
