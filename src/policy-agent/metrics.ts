// Prometheus metrics of the policy datapath, from the nft named counters, on a loopback HTTP
// endpoint. Counter values are accumulated per label set from the deltas of the kernel counters,
// so the series stay monotonic when a reload renames a group counter or a policy comes and goes.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Registry } from "prom-client";
import type { ControllerStats, CounterReading } from "./controller.js";

export interface CounterSource {
  counters(): Promise<CounterReading[]>;
  readonly stats?: ControllerStats;
}

type Labels = Record<string, string>;

/** Sums of counter deltas per label set: a kernel counter that restarts from 0 adds its new value. */
class Accumulator {
  private readonly last = new Map<string, number>();
  readonly totals = new Map<string, { labels: Labels; value: number }>();

  /** Records the reading of one kernel counter under each of `labelSets`. */
  add(counter: string, value: number, labelSets: Labels[], seen: Set<string>): void {
    seen.add(counter);
    const prev = this.last.get(counter);
    const delta = prev === undefined || value < prev ? value : value - prev;
    this.last.set(counter, value);
    for (const labels of labelSets) {
      const k = JSON.stringify(labels);
      const t = this.totals.get(k) ?? { labels, value: 0 };
      t.value += delta;
      this.totals.set(k, t);
    }
  }

  /** Counters no longer in the table: a later counter of the same name starts over. */
  forgetExcept(seen: Set<string>): void {
    for (const k of [...this.last.keys()]) if (!seen.has(k)) this.last.delete(k);
  }
}

export interface PolicyMetrics {
  registry: Registry;
}

/**
 * A registry with:
 *   weft_policy_packets_total / weft_policy_bytes_total{namespace,policy,direction,verdict}
 *     verdict="allow": packets a rule of the policy accepted; verdict="deny": packets dropped for
 *     a pod the policy isolates (a drop under several policies counts for each of them),
 *   weft_policy_rule_packets_total{namespace,policy,direction,rule}: accepts per rule,
 *   weft_policy_group_denied_packets_total{direction,group,policies}: drops per isolation group,
 *   weft_policy_spoofed_packets_total: packets dropped by anti-spoofing,
 *   weft_policy_applies_total{kind}, weft_policy_apply_failures (controller health).
 */
export function createPolicyMetrics(source: CounterSource, registry = new Registry()): PolicyMetrics {
  const acc = {
    packets: new Accumulator(),
    bytes: new Accumulator(),
    rules: new Accumulator(),
    groups: new Accumulator(),
    spoof: new Accumulator(),
  };
  let pending: Promise<void> | null = null;

  // One kernel read per scrape, shared by every metric's collect().
  const refresh = (): Promise<void> => {
    pending ??= (async () => {
      try {
        const readings = await source.counters();
        const seen = {
          packets: new Set<string>(),
          bytes: new Set<string>(),
          rules: new Set<string>(),
          groups: new Set<string>(),
          spoof: new Set<string>(),
        };
        for (const r of readings) {
          if (r.kind === "allow") {
            const base = { namespace: r.policy.namespace, policy: r.policy.name, direction: r.direction };
            acc.packets.add(r.name, r.packets, [{ ...base, verdict: "allow" }], seen.packets);
            acc.bytes.add(r.name, r.bytes, [{ ...base, verdict: "allow" }], seen.bytes);
            acc.rules.add(r.name, r.packets, [{ ...base, rule: String(r.rule) }], seen.rules);
          } else if (r.kind === "deny") {
            const sets = r.policies.map((p) => ({
              namespace: p.namespace,
              policy: p.name,
              direction: r.direction,
              verdict: "deny",
            }));
            acc.packets.add(r.name, r.packets, sets, seen.packets);
            acc.bytes.add(r.name, r.bytes, sets, seen.bytes);
            const policies = r.policies.map((p) => `${p.namespace}/${p.name}`).join(",");
            acc.groups.add(r.name, r.packets, [{ direction: r.direction, group: r.group, policies }], seen.groups);
          } else {
            acc.spoof.add(r.name, r.packets, [{}], seen.spoof);
          }
        }
        for (const k of Object.keys(acc) as Array<keyof typeof acc>) acc[k].forgetExcept(seen[k]);
      } finally {
        setImmediate(() => (pending = null));
      }
    })();
    return pending;
  };

  const mirror = (name: string, help: string, labelNames: string[], a: Accumulator): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        await refresh();
        this.reset();
        for (const { labels, value } of a.totals.values()) this.inc(labels, value);
      },
    });
  };
  mirror(
    "weft_policy_packets_total",
    "Packets allowed or denied by NetworkPolicy, per policy",
    ["namespace", "policy", "direction", "verdict"],
    acc.packets,
  );
  mirror(
    "weft_policy_bytes_total",
    "Bytes allowed or denied by NetworkPolicy, per policy",
    ["namespace", "policy", "direction", "verdict"],
    acc.bytes,
  );
  mirror(
    "weft_policy_rule_packets_total",
    "Packets accepted per NetworkPolicy rule",
    ["namespace", "policy", "direction", "rule"],
    acc.rules,
  );
  mirror(
    "weft_policy_group_denied_packets_total",
    "Packets dropped per isolation group (the set of policies selecting a pod)",
    ["direction", "group", "policies"],
    acc.groups,
  );
  mirror(
    "weft_policy_spoofed_packets_total",
    "Packets from a pod veth with a source address not the pod's",
    [],
    acc.spoof,
  );

  if (source.stats) {
    const stats = source.stats;
    new Gauge({
      name: "weft_policy_applies",
      help: "Ruleset commits by this agent: full table replacements and element-only updates",
      labelNames: ["kind"],
      registers: [registry],
      collect() {
        this.set({ kind: "full" }, stats.fullApplies);
        this.set({ kind: "elements" }, stats.elementApplies);
      },
    });
    new Gauge({
      name: "weft_policy_compiles",
      help: "How pod, namespace and policy changes were compiled: the whole cluster again (full) or only the pods that changed (incremental)",
      labelNames: ["kind"],
      registers: [registry],
      collect() {
        this.set({ kind: "full" }, stats.fullCompiles);
        this.set({ kind: "incremental" }, stats.incrementalApplies);
      },
    });
    new Gauge({
      name: "weft_policy_apply_failures",
      help: "Consecutive failed ruleset commits (0 = the kernel holds the current policy)",
      registers: [registry],
      collect() {
        this.set(stats.failures);
      },
    });
  }
  return { registry };
}

export interface MetricsServer {
  /** The bound port (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics on HOST:PORT (loopback by default). */
export async function startMetricsServer(
  registry: Registry,
  opts: { port: number; host?: string },
): Promise<MetricsServer> {
  const host = opts.host ?? "127.0.0.1";
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535)
    throw new Error(`metrics port ${opts.port} is not in 0..65535`);
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: use GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (e: unknown) =>
        res
          .writeHead(500, { "content-type": "text/plain" })
          .end(`metrics unavailable: ${e instanceof Error ? e.message : String(e)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
