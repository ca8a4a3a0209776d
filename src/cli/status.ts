// `weft status`: the cluster as the store sees it: settings, every node (lease, pod CIDRs, the
// report its agent publishes: health, per-peer wiring errors, pods), dead nodes whose subnets are
// still reserved, and whether the store answers.
import type { Command } from "commander";
import { readAgentReport, readBackendData, type AgentReport, type PeerReport } from "../agent/published.js";
import type { ClusterSettings, ClusterStore, NodeInfo } from "../store/types.js";
import { UserError } from "./errors.js";
import { addStoreOptions, withStore, type StoreFlags } from "./store-flags.js";

export interface NodeStatus {
  name: string;
  /** Lease alive and the agent has published its report. */
  ready: boolean;
  underlay: string[];
  podCIDRs: string[];
  lease: { alive: boolean; ttlSeconds: number | null; ageSeconds: number | null; registeredAt: string | null };
  agent: {
    health: AgentReport["health"];
    backend: string;
    podMtu: number;
    wiredPods: number;
    strandedPods: number;
    /** vxlan: the VTEP's offloads (ethtool feature -> on), as the agent set it up. */
    device?: { name: string; offloads: Record<string, boolean> };
  } | null;
  /** Pod objects with spec.nodeName = this node. */
  pods: number;
  peers: Record<string, PeerReport>;
  /** bgp backend: the node's BGP sessions as its agent last read them from BIRD (since: ISO 8601). */
  sessions?: AgentReport["sessions"];
  /** bgp backend: BIRD's health at the agent's last sync. */
  daemon?: AgentReport["daemon"];
  /** Encryption between nodes as the node's agent last reported it (absent while off). */
  encryption?: AgentReport["encryption"];
  errors: string[];
  /** What weft could not read about this node (a damaged annotation or agent report); null when all was readable. */
  problem: string | null;
}

export interface ClusterStatus {
  store: { description: string; reachable: true; latencyMs: number };
  cluster: ClusterSettings;
  backend: string;
  /** The cluster's MTU setting, else the pod MTU the agents report (null when none has). */
  mtu: number | null;
  nodes: NodeStatus[];
  /** Subnets of nodes whose lease expired, reserved for them until the grace period ends. */
  reservedSubnets: { cidr: string; node: string; claimedAt: string }[];
  /** Every node's errors and unreadable data, one line each ("NODE: what"), as the table prints them. */
  problems: string[];
  healthy: boolean;
}

export async function collectStatus(store: ClusterStore, now = Date.now()): Promise<ClusterStatus> {
  const t0 = performance.now();
  const settings = await store.getClusterSettings();
  const latencyMs = +(performance.now() - t0).toFixed(1);
  if (!settings)
    throw new UserError(
      `the cluster in ${store.description} is not initialized: run weft cluster init --cluster-cidr CIDR[,CIDR] --backend vxlan|host-gw|vxlan-direct`,
      1,
    );
  const [nodes, claims, pods] = await Promise.all([
    store.listNodes(),
    store.listSubnetClaims(),
    store.objects.list("Pod"),
  ]);
  const podsOn = new Map<string, number>();
  for (const p of pods) {
    const n = (p.spec as { nodeName?: unknown } | undefined)?.nodeName;
    if (typeof n === "string") podsOn.set(n, (podsOn.get(n) ?? 0) + 1);
  }
  const live = new Set(nodes.map((n) => n.name));
  const out: NodeStatus[] = nodes.map((n) => nodeStatus(n, podsOn.get(n.name) ?? 0, now));
  // Dead nodes still holding subnets: shown as not ready, so a stopped agent is visible.
  const dead = new Map<string, string[]>();
  for (const c of claims) if (!live.has(c.node)) dead.set(c.node, [...(dead.get(c.node) ?? []), c.cidr]);
  for (const [name, cidrs] of dead) {
    out.push({
      name,
      ready: false,
      underlay: [],
      podCIDRs: cidrs,
      lease: { alive: false, ttlSeconds: null, ageSeconds: null, registeredAt: null },
      agent: null,
      pods: podsOn.get(name) ?? 0,
      peers: {},
      errors: ["lease expired: the agent is not running; its subnets are reserved for it until the grace period ends"],
      problem: null,
    });
  }
  out.sort((a, b) => a.name.localeCompare(b.name));
  const mtus = [...new Set(out.flatMap((n) => (n.agent ? [n.agent.podMtu] : [])))];
  return {
    store: { description: store.description, reachable: true, latencyMs },
    cluster: settings,
    backend: settings.backend,
    mtu: settings.mtu ?? (mtus.length === 1 ? mtus[0] : mtus.length ? Math.min(...mtus) : null),
    nodes: out,
    reservedSubnets: claims.filter((c) => !live.has(c.node)),
    problems: out.flatMap((n) => [
      ...(n.problem ? [`${n.name}: ${n.problem}`] : []),
      ...n.errors.map((e) => `${n.name}: ${e}`),
    ]),
    healthy: out.every((n) => n.ready && n.agent?.health === "ok" && n.problem === null),
  };
}

function nodeStatus(n: NodeInfo, pods: number, now: number): NodeStatus {
  // Unreadable data is a problem to show, never "nothing published".
  const { report, problem: reportProblem } = readAgentReport(n.backendData);
  const problem =
    [n.problem, readBackendData(n.backendData).problem, reportProblem]
      .filter((p): p is string => p !== undefined)
      .join("; ") || null;
  const registered = Date.parse(n.registeredAt);
  const errors = [...(report?.errors ?? [])];
  for (const [peer, p] of Object.entries(report?.peers ?? {}))
    for (const e of p.errors) errors.push(e.startsWith(`peer ${peer}`) ? e : `peer ${peer}: ${e}`);
  // A peer the node cannot encrypt to (no key yet, bad key): its traffic is dropped (strict).
  const enc = report?.encryption;
  if (enc?.error) errors.push(`encryption: ${enc.error}`);
  for (const e of enc?.status?.errors ?? []) errors.push(`encryption: ${e}`);
  for (const p of enc?.status?.peers ?? []) for (const e of p.errors) errors.push(`encryption peer ${p.name}: ${e}`);
  if (report?.strandedPods)
    errors.push(
      `${report.strandedPods} pod(s) have addresses outside this node's pod CIDRs (lost during a store outage): re-create them`,
    );
  return {
    name: n.name,
    ready: report !== undefined,
    underlay: n.addresses,
    podCIDRs: n.podCIDRs,
    lease: {
      alive: true,
      ttlSeconds: n.leaseTTLSeconds,
      ageSeconds: Number.isNaN(registered) ? null : Math.max(0, Math.round((now - registered) / 1000)),
      registeredAt: n.registeredAt,
    },
    agent: report
      ? {
          health: report.health,
          backend: report.backend,
          podMtu: report.podMtu,
          wiredPods: report.pods,
          strandedPods: report.strandedPods ?? 0,
          ...(report.device ? { device: report.device } : {}),
        }
      : null,
    pods,
    peers: report?.peers ?? {},
    ...(report?.sessions ? { sessions: report.sessions } : {}),
    ...(report?.daemon ? { daemon: report.daemon } : {}),
    ...(report?.encryption ? { encryption: report.encryption } : {}),
    errors,
    problem,
  };
}

function age(s: number | null): string {
  if (s === null) return "-";
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h`;
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(w[i]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function printStatus(s: ClusterStatus): void {
  const lines = [
    `store:    ${s.store.description} (reachable, ${s.store.latencyMs} ms)`,
    `cluster:  ${s.cluster.clusterCIDRs.join(", ")}  backend ${s.backend}  MTU ${s.mtu ?? "-"}${s.cluster.mtu !== undefined ? " (cluster setting)" : ""}`,
    `health:   ${s.healthy ? "ok" : "degraded"}`,
    "",
  ];
  const rows = [["NODE", "READY", "UNDERLAY", "POD CIDRS", "LEASE TTL", "AGE", "AGENT", "PODS", "WIRED"]];
  for (const n of s.nodes) {
    rows.push([
      n.name,
      n.ready ? "True" : "False",
      n.underlay.join(",") || "-",
      n.podCIDRs.join(",") || "-",
      n.lease.ttlSeconds === null ? "expired" : `${n.lease.ttlSeconds}s`,
      age(n.lease.ageSeconds),
      n.agent?.health ?? "-",
      String(n.pods),
      n.agent ? String(n.agent.wiredPods) : "-",
    ]);
  }
  lines.push(table(rows));
  const now = Date.now();
  const since = (t: string | undefined): string => {
    const ms = t ? Date.parse(t) : NaN;
    return Number.isNaN(ms) ? "-" : age(Math.max(0, Math.round((now - ms) / 1000)));
  };
  const count = (v: number | undefined): string => (v === undefined ? "-" : String(v));
  const sessions = s.nodes.flatMap((n) =>
    (n.sessions ?? []).map((x) => [
      n.name,
      x.peer,
      x.address,
      x.state,
      since(x.since),
      count(x.imported),
      count(x.exported),
    ]),
  );
  if (sessions.length)
    lines.push("", table([["NODE", "BGP PEER", "ADDRESS", "STATE", "SINCE", "IMPORTED", "EXPORTED"], ...sessions]));
  const daemons = s.nodes.flatMap((n) =>
    n.daemon ? [[n.name, n.daemon.name, n.daemon.ok ? "up" : "down", n.daemon.detail]] : [],
  );
  if (daemons.length) lines.push("", table([["NODE", "DAEMON", "STATE", "DETAIL"], ...daemons]));
  // The VXLAN checksum workaround (offload off) also costs TSO: show what each VTEP runs with.
  const onOff = (d: { offloads: Record<string, boolean> }, f: string) =>
    d.offloads[f] === undefined ? "-" : d.offloads[f] ? "on" : "off";
  const devices = s.nodes.flatMap((n) =>
    n.agent?.device
      ? [
          [
            n.name,
            n.agent.device.name,
            onOff(n.agent.device, "tx-checksum-ip-generic"),
            onOff(n.agent.device, "tcp-segmentation-offload"),
            onOff(n.agent.device, "generic-segmentation-offload"),
          ],
        ]
      : [],
  );
  if (devices.length) lines.push("", table([["NODE", "DEVICE", "TX CSUM OFFLOAD", "TSO", "GSO"], ...devices]));
  const enc = s.nodes.flatMap((n) =>
    (n.encryption?.status?.peers ?? []).map((p) => [
      n.name,
      p.name,
      n.encryption!.type,
      p.ok ? "ok" : "NO KEY/DROPPED",
      p.keySince ? age(Math.round((Date.now() - Date.parse(p.keySince)) / 1000)) : "-",
      p.lastHandshake ? `${age(Math.round((Date.now() - Date.parse(p.lastHandshake)) / 1000))} ago` : "never",
      p.rxBytes !== undefined ? `${p.rxBytes}/${p.txBytes ?? 0}` : "-",
    ]),
  );
  const encNodes = s.nodes.filter((n) => n.encryption);
  if (encNodes.length)
    lines.push(
      "",
      ...encNodes.map(
        (n) =>
          `encryption ${n.name}: ${n.encryption!.type}${n.encryption!.strict ? " (strict)" : ""}, ${n.encryption!.status?.implementation ?? "not running"}, device ${n.encryption!.status?.device ?? "-"}, pod MTU ceiling ${n.encryption!.podMtuCeiling ?? "-"}, key made ${n.encryption!.status?.keyCreatedAt ?? "-"}`,
      ),
    );
  if (enc.length)
    lines.push("", table([["NODE", "ENCRYPTED PEER", "TYPE", "STATE", "KEY AGE", "HANDSHAKE", "RX/TX BYTES"], ...enc]));
  if (s.problems.length) lines.push("", "problems:", ...s.problems.map((p) => `  ${p}`));
  process.stdout.write(lines.join("\n") + "\n");
}

export function registerStatus(program: Command): void {
  addStoreOptions(
    program
      .command("status")
      .description("nodes, leases, backend, MTU, pods, agent and store health")
      .option("-o, --output <format>", "json"),
  ).action(async (o: StoreFlags & { output?: string }) => {
    if (o.output !== undefined && o.output !== "json") throw new UserError(`-o ${o.output}: only "json" is supported`);
    await withStore(
      o,
      async (store) => {
        let s: ClusterStatus;
        try {
          s = await collectStatus(store);
        } catch (e) {
          if (e instanceof UserError) throw e;
          throw new UserError(
            `cannot read the cluster state from ${store.description}: ${e instanceof Error ? e.message : String(e)}`,
            1,
          );
        }
        if (o.output === "json") process.stdout.write(JSON.stringify(s, null, 2) + "\n");
        else printStatus(s);
      },
      { mustExist: true },
    );
  });
}
