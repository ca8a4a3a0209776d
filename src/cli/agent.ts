// `weft agent`: the node agent in the foreground (see src/agent/run.ts).
import { isIPv4, isIPv6 } from "node:net";
import { type Command, Option } from "commander";
import { InvalidCidr, parsePool, type Pool } from "../ipam/pool.js";
import { ConfigFileError, readAgentConfig, type ConfigKey } from "../agent/config-file.js";
import {
  findKubeApi,
  isPolicySource,
  kubeStoreConfig,
  POLICY_SOURCES,
  PolicySourceError,
  resolvePolicySource,
  SERVICE_ACCOUNT_TOKEN,
} from "../agent/policy-source.js";
import { isLogLevel, LOG_LEVELS, makeLogger, startAgent, type AgentConfig, type LogLevel } from "../agent/run.js";
import { parseUnderlayAddresses, UnderlayError } from "../agent/underlay.js";
import { isPodKernelName, POD_KERNELS } from "../kernel/pod/index.js";
import type { StoreConfig } from "../store/index.js";
import { DEFAULT_SUBNET_GRACE_SECONDS } from "../store/registration.js";
import { UserError } from "./errors.js";
import { addEtcdOptions, etcdConnectionFromFlags, refuseEtcdFlags, type EtcdFlags } from "./store-flags.js";
import { DEFAULT_SOCKET } from "./install-cni.js";

/**
 * --handover's default: longer than an agent's restart in a rolling update takes (kill, a new pod
 * through the kubelet and runtime, the agent's start; up to about 40 s seen on a busy 2-core node).
 */
export const DEFAULT_HANDOVER_SECONDS = 120;

/** Where a cluster-mode agent keeps its IPAM state when --state-dir is not given. */
export const DEFAULT_STATE_DIR = "/var/lib/weft";

function parsePodCidrs(value: string): Pool[] {
  const pools: Pool[] = [];
  for (const part of value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    try {
      pools.push(parsePool(part));
    } catch (e) {
      throw new UserError(`--pod-cidr: ${e instanceof InvalidCidr ? e.message : String(e)}`);
    }
  }
  if (pools.length === 0) throw new UserError("--pod-cidr: give one IPv4 and/or one IPv6 CIDR");
  if (pools.filter((p) => p.family === 4).length > 1 || pools.filter((p) => p.family === 6).length > 1) {
    throw new UserError("--pod-cidr: at most one IPv4 and one IPv6 CIDR");
  }
  return pools.sort((a, b) => a.family - b.family);
}

function intFlag(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UserError(`${name} ${v}: must be an integer from ${min} to ${max}`);
  return n;
}

/**
 * --api-server: HOST:PORT, [IPv6]:PORT or https://HOST:PORT (an IP address or a DNS name); the
 * in-cluster client speaks HTTPS with the ServiceAccount's CA.
 */
export function parseApiServer(v: string): { host: string; port: number } {
  const bad = (why: string) =>
    new UserError(`--api-server ${JSON.stringify(v)}: ${why}; give HOST:PORT, [IPv6]:PORT or https://HOST:PORT`);
  let rest = v.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) {
    if (!rest.toLowerCase().startsWith("https://")) throw bad("only https:// (the API server serves TLS)");
    rest = rest.slice("https://".length).replace(/\/$/, "");
  }
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(rest) ?? /^([^:/[\]]+):(\d+)$/.exec(rest);
  if (!m) throw bad("not a host and port");
  const [, host, portText] = m;
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(`port ${portText} is not 1-65535`);
  if (
    rest.startsWith("[")
      ? !isIPv6(host)
      : !isIPv4(host) && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/i.test(host)
  )
    throw bad(`${host} is not an IP address or a DNS name`);
  return { host, port };
}

interface AgentFlags extends EtcdFlags {
  node?: string;
  store: string;
  stateDir?: string;
  socket: string;
  podCidr?: string;
  mtu?: string;
  kubeconfig?: string;
  apiServer?: string;
  underlayAddress?: string;
  metricsPort?: string;
  leaseTtl?: string;
  subnetGrace?: string;
  handover?: string;
  resyncInterval?: string;
  denyLog?: boolean;
  kernel?: string;
  realNode?: boolean;
  config?: string;
  logLevel?: string;
  healthPort?: string;
  policySource?: string;
}

/** The agent's configuration from its flags; UserError (exit 2) for anything wrong. */
export function agentConfigFromFlags(o: AgentFlags, processEnv: NodeJS.ProcessEnv = process.env): AgentConfig {
  // --api-server stands for the environment's KUBERNETES_SERVICE_HOST/PORT (in a pod: the kubernetes
  // Service's ClusterIP, which answers only where kube-proxy or the like runs).
  const apiServer = o.apiServer === undefined ? undefined : parseApiServer(o.apiServer);
  if (apiServer && (o.kubeconfig || processEnv.KUBECONFIG))
    throw new UserError(
      `--api-server goes with a pod's ServiceAccount credentials; ${o.kubeconfig ? "--kubeconfig" : "$KUBECONFIG"} names its own server: give one or the other`,
    );
  const env: NodeJS.ProcessEnv = apiServer
    ? { ...processEnv, KUBERNETES_SERVICE_HOST: apiServer.host, KUBERNETES_SERVICE_PORT: String(apiServer.port) }
    : processEnv;
  const withApiServer = (c: StoreConfig): StoreConfig =>
    apiServer && c.kind === "kubernetes" && !c.kubeconfig ? { ...c, apiServer } : c;
  if (o.node === undefined) throw new UserError("--node NAME is required (or node: in the --config file)");
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(o.node))
    throw new UserError(`--node "${o.node}": use lower-case letters, digits, '-' and '.' (a Kubernetes node name)`);
  const mtu = intFlag("--mtu", o.mtu, 68, 65535);
  const metricsPort = intFlag("--metrics-port", o.metricsPort, 0, 65535);
  const leaseTtl = intFlag("--lease-ttl", o.leaseTtl, 1, 3600);
  const subnetGrace = intFlag("--subnet-grace", o.subnetGrace, 1, 86400 * 7);
  const grace = subnetGrace ?? DEFAULT_SUBNET_GRACE_SECONDS;
  const handover = intFlag("--handover", o.handover, 0, 86400 * 7);
  if (handover !== undefined && handover > grace)
    throw new UserError(
      `--handover ${handover}: at most --subnet-grace (${grace}): the node's subnets must stay reserved while its lease is handed over`,
    );
  const resync = intFlag("--resync-interval", o.resyncInterval, 1, 3600);
  const healthPort = intFlag("--health-port", o.healthPort, 0, 65535);
  const policySource = o.policySource ?? "auto";
  if (!isPolicySource(policySource))
    throw new UserError(`--policy-source ${policySource}: use ${POLICY_SOURCES.join(", ")}`);
  if (o.kernel !== undefined && !isPodKernelName(o.kernel))
    throw new UserError(`--kernel ${o.kernel}: use ${POD_KERNELS.join(" or ")}`);
  const kernel = o.kernel as AgentConfig["kernel"];
  let underlay: string[] | undefined;
  try {
    underlay = o.underlayAddress === undefined ? undefined : parseUnderlayAddresses(o.underlayAddress);
  } catch (e) {
    throw new UserError(e instanceof UnderlayError ? e.message : String(e));
  }
  let store: StoreConfig;
  let pools: Pool[] | undefined;
  let stateDir = o.stateDir;
  switch (o.store) {
    case "local":
      if (!stateDir) throw new UserError("--store local needs --state-dir DIR");
      refuseEtcdFlags(o, "local");
      if (o.kubeconfig) throw new UserError("--kubeconfig goes with --store kubernetes, not --store local");
      if (!o.podCidr) throw new UserError("--pod-cidr is required with --store local");
      pools = parsePodCidrs(o.podCidr);
      store = { kind: "local", stateDir };
      break;
    case "etcd":
      if (o.podCidr)
        throw new UserError(
          "--pod-cidr goes with --store local: in a cluster the node's pod CIDRs come from the store (weft cluster init --cluster-cidr)",
        );
      store = { kind: "etcd", ...etcdConnectionFromFlags(o), requestTimeoutMs: 3000 };
      break;
    case "kubernetes":
      if (o.podCidr)
        throw new UserError(
          "--pod-cidr goes with --store local: with --store kubernetes the node's pod CIDRs come from the cluster",
        );
      refuseEtcdFlags(o, "kubernetes");
      // Without --kubeconfig the store takes $KUBECONFIG, a pod's ServiceAccount, or ~/.kube/config.
      store = kubeStoreConfig(o.kubeconfig, env);
      break;
    default:
      throw new UserError(`--store ${o.store}: use local, etcd or kubernetes`);
  }
  stateDir ??= DEFAULT_STATE_DIR;
  let policy: ReturnType<typeof resolvePolicySource>;
  try {
    policy = resolvePolicySource(store.kind, policySource, findKubeApi(o.kubeconfig, env), env);
  } catch (e) {
    throw new UserError(e instanceof PolicySourceError ? e.message : String(e));
  }
  const inCluster = [store, policy.policyStore].some((c) => c?.kind === "kubernetes" && !c.kubeconfig);
  if (apiServer && !inCluster)
    throw new UserError(
      `--api-server is for an agent in a pod: no ServiceAccount token at ${SERVICE_ACCOUNT_TOKEN} here${store.kind === "kubernetes" ? "" : ` (and --store ${store.kind})`}; outside a pod give --kubeconfig`,
    );
  return {
    node: o.node,
    stateDir,
    socket: o.socket,
    store: withApiServer(store),
    ...(pools ? { pools } : {}),
    ...(mtu !== undefined ? { mtu } : {}),
    ...(underlay ? { underlay } : {}),
    ...(metricsPort !== undefined ? { metricsPort } : {}),
    ...(leaseTtl !== undefined ? { leaseTtlSeconds: leaseTtl } : {}),
    ...(subnetGrace !== undefined ? { subnetGraceSeconds: subnetGrace } : {}),
    // The Kubernetes store's lease can be handed over (a rolling update's restart); etcd's runs out by TTL.
    ...(store.kind === "kubernetes" ? { handoverSeconds: handover ?? Math.min(DEFAULT_HANDOVER_SECONDS, grace) } : {}),
    ...(resync !== undefined ? { resyncMs: resync * 1000 } : {}),
    ...(kernel !== undefined ? { kernel } : {}),
    denyLog: o.denyLog !== false,
    ...(o.realNode === true ? { realNode: true } : {}),
    ...(healthPort !== undefined ? { healthPort } : {}),
    ...(policy.policyStore ? { policyStore: withApiServer(policy.policyStore) } : {}),
    policySourceReason: policy.reason,
  };
}

/** The settings a --config file may hold: every flag of the command but --config itself. */
function configKeys(cmd: Command): ConfigKey[] {
  return cmd.options
    .filter((opt) => opt.long !== "--config" && opt.long !== undefined)
    .map((opt) => ({ key: opt.attributeName(), flag: opt.long!, boolean: opt.isBoolean() || opt.negate }));
}

/**
 * The flags with the --config file under them: a flag given on the command line (or by its
 * environment variable) wins over the file, the file over the defaults.
 */
export function mergeConfigFile(cmd: Command, o: AgentFlags): AgentFlags {
  if (!o.config) return o;
  let file: Record<string, string | boolean>;
  try {
    file = readAgentConfig(o.config, configKeys(cmd));
  } catch (e) {
    throw new UserError(e instanceof ConfigFileError ? e.message : String(e));
  }
  const merged: AgentFlags = { ...o };
  for (const [k, v] of Object.entries(file)) {
    const from = cmd.getOptionValueSource(k);
    if (from === "cli" || from === "env") continue;
    Object.assign(merged, { [k]: v });
  }
  return merged;
}

export function registerAgent(program: Command): void {
  const cmd = program
    .command("agent")
    .description(
      "run the node agent in the foreground: wires pods, keeps routes to other nodes, enforces network policy, serves the CNI plugin on a unix socket",
    )
    .option("--node <name>", "this node's name (required, here or in --config)")
    .option(
      "--config <file>",
      "read settings from a YAML file, keys named like the flags in camelCase (healthPort: 9090); flags given here win",
    )
    .option(
      "--store <kind>",
      "where cluster state lives: local (single host, embedded in --state-dir), etcd, kubernetes",
      "local",
    )
    .option(
      "--state-dir <dir>",
      `directory for the agent's crash-safe state (required with --store local; default ${DEFAULT_STATE_DIR})`,
    )
    .option("--socket <path>", "unix socket the CNI plugin talks to (created 0600)", DEFAULT_SOCKET)
    .option("--pod-cidr <cidr[,cidr]>", "--store local: this host's pod CIDRs, one IPv4 and/or one IPv6");
  addEtcdOptions(cmd, "--store etcd: http(s)://HOST:PORT or unix(s):///PATH, comma-separated");
  cmd
    .option(
      "--kubeconfig <file>",
      "kubeconfig of the API server: the store with --store kubernetes, where policies come from with --store etcd (default $KUBECONFIG, then a pod's ServiceAccount, then ~/.kube/config)",
    )
    .option(
      "--api-server <host:port>",
      "in a pod: the API server's address (HOST:PORT, [IPv6]:PORT, https://HOST:PORT) instead of $KUBERNETES_SERVICE_HOST/PORT, e.g. where no kube-proxy serves the kubernetes Service; credentials stay the pod's ServiceAccount",
    )
    .addOption(
      new Option(
        "--policy-source <source>",
        "where NetworkPolicies, Pods and Namespaces come from: store (the --store's objects), kubernetes (the API server), auto (kubernetes whenever an API is configured: --kubeconfig, $KUBECONFIG, in-cluster)",
      )
        .choices(POLICY_SOURCES)
        .default("auto"),
    )
    .option(
      "--underlay-address <ip[,ip]>",
      "this node's underlay address(es), one per family (default: the default route's device, else the first global address)",
    )
    .option("--mtu <n>", "pod MTU (default: the underlay's minus the backend's overhead, or the cluster's MTU setting)")
    .option("--metrics-port <n>", "serve policy metrics on 127.0.0.1:N/metrics (default: off; 0 = any free port)")
    .option(
      "--health-port <n>",
      "serve /healthz (liveness) and /readyz (readiness) on 127.0.0.1:N (default: off; 0 = any free port, logged)",
    )
    .addOption(
      new Option("--log-level <level>", "log level of the agent's JSON log on stderr (default info)")
        .choices(LOG_LEVELS)
        .env("WEFT_LOG_LEVEL"),
    )
    .option(
      "--lease-ttl <seconds>",
      "node lease TTL: a stopped node disappears from its peers this long after (default 15)",
    )
    .option("--subnet-grace <seconds>", "how long a dead node's pod CIDR stays reserved for it (default 300)")
    .option(
      "--handover <seconds>",
      `--store kubernetes: on SIGTERM/SIGINT, keep the node's lease live this long for the agent that replaces it (a rolling update), so peers keep their routes to the node; 0 = it runs out by --lease-ttl (default ${DEFAULT_HANDOVER_SECONDS})`,
    )
    .option("--resync-interval <seconds>", "re-sync peer routes this often to repair drift (default 10)")
    .addOption(
      new Option(
        "--kernel <name>",
        "how the agent wires pods and peer routes: netlink (rtnetlink from the agent) or iproute (ip/bridge child processes)",
      )
        .choices(POD_KERNELS)
        .env("WEFT_KERNEL"),
    )
    .option(
      "--real-node",
      "this machine is a node weft owns: allow running in its own network namespace (that of PID 1); without it the agent refuses there",
    )
    .option(
      "--no-deny-log",
      "do not log connections denied by network policy (the log reads NFLOG group 100 with tcpdump, which dies with the agent)",
    )
    .action(async (flags: AgentFlags, command: Command) => {
      const o = mergeConfigFile(command, flags);
      const cfg = agentConfigFromFlags(o);
      if (o.logLevel !== undefined && !isLogLevel(o.logLevel))
        throw new UserError(`--log-level ${o.logLevel}: use ${LOG_LEVELS.join(", ")}`);
      const log = makeLogger(o.logLevel as LogLevel | undefined);
      // A crash says why in the agent's own log format (the process supervisor restarts it).
      const crash = (kind: string) => (e: unknown) => {
        log.fatal({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, kind);
        process.exit(1);
      };
      process.on("uncaughtException", crash("uncaught exception"));
      process.on("unhandledRejection", crash("unhandled rejection"));
      let agent: Awaited<ReturnType<typeof startAgent>>;
      try {
        agent = await startAgent(cfg, log);
      } catch (e) {
        throw new UserError(e instanceof Error ? e.message : String(e), 1);
      }
      const shutdown = (sig: string) => {
        log.info({ signal: sig }, "stopping; pods, routes and policy rules stay as they are");
        void agent.stop().finally(() => process.exit(0));
      };
      process.once("SIGTERM", () => shutdown("SIGTERM"));
      process.once("SIGINT", () => shutdown("SIGINT"));
      try {
        await agent.ready;
      } catch (e) {
        log.error({ err: e instanceof Error ? e.message : String(e) }, "the agent cannot join the cluster");
        await agent.stop().catch(() => undefined);
        throw new UserError(e instanceof Error ? e.message : String(e), 1);
      }
    });
}
