// One call for the agent: the policy controller, its /metrics endpoint and the deny log, started
// in the order that never opens a gap (the controller's first atomic commit comes first) and
// stopped without touching the rules (they stay in force for the next agent to adopt).
import type { Logger } from "pino";
import { netnsPath } from "../kernel/validate.js";
import type { LocalPod } from "../policy/index.js";
import type { ObjectStore } from "../store/types.js";
import { PolicyController } from "./controller.js";
import { createPolicyDatapath, type PolicyDatapathName } from "./datapath/index.js";
import { DenyLogger } from "./denylog.js";
import type { MetricsServer } from "./metrics.js";

export interface PolicyEnforcementOptions {
  node: string;
  /** Namespace of the node's datapath; absent = the agent's own. */
  netns?: string;
  objects: ObjectStore;
  localPods: () => LocalPod[] | Promise<LocalPod[]>;
  log: Logger;
  /** Serve /metrics on metricsHost:metricsPort (port 0 = any free port); absent = no endpoint. */
  metricsPort?: number;
  /** Default 127.0.0.1: counters name policies and pods, so they stay on loopback unless asked. */
  metricsHost?: string;
  /** Log denied connections from NFLOG (default true). Needs tcpdump. */
  denyLog?: boolean;
  /** NFLOG group for denied packets. Default 100. */
  nflogGroup?: number;
  /** Which datapath enforces the policies. Default nft (the only one so far). */
  datapath?: PolicyDatapathName;
  /** Adds the agent's other metrics (e.g. the bgp backend's) to the /metrics registry. */
  registerMetrics?: (registry: import("prom-client").Registry) => void | Promise<void>;
}

export interface PolicyEnforcement {
  controller: PolicyController;
  /** The bound metrics port, when serving. */
  metricsPort: number | null;
  stop(): Promise<void>;
}

export async function startPolicyEnforcement(o: PolicyEnforcementOptions): Promise<PolicyEnforcement> {
  const log = o.log.child({ component: "policy" });
  const group = o.nflogGroup ?? 100;
  const render = { nflogGroup: group };
  // The one place the datapath is chosen: the controller below only calls it.
  const datapath = createPolicyDatapath(o.datapath ?? "nft", {
    ...(o.netns !== undefined ? { netns: netnsPath(o.netns) } : {}),
    render,
  });
  const controller = new PolicyController({
    node: o.node,
    ...(o.netns !== undefined ? { netns: o.netns } : {}),
    objects: o.objects,
    localPods: o.localPods,
    log,
    render,
    datapath,
  });
  await controller.start();
  let metrics: MetricsServer | null = null;
  let deny: DenyLogger | null = null;
  try {
    if (o.metricsPort !== undefined) {
      // prom-client (and the OpenTelemetry API it pulls in) loads only for an agent that serves metrics.
      const { createPolicyMetrics, startMetricsServer } = await import("./metrics.js");
      const { registry } = createPolicyMetrics(controller);
      await o.registerMetrics?.(registry);
      metrics = await startMetricsServer(registry, { port: o.metricsPort, host: o.metricsHost ?? "127.0.0.1" });
      log.info({ address: `${o.metricsHost ?? "127.0.0.1"}:${metrics.port}` }, "policy metrics on /metrics");
    }
    if (o.denyLog !== false) {
      deny = new DenyLogger({
        ...(o.netns !== undefined ? { netns: o.netns } : {}),
        group,
        log,
        model: () => controller.model(),
      });
      // A missing listener costs the log lines, not enforcement: warn and go on.
      await deny.start().catch((e: unknown) => log.warn({ err: String(e) }, "denied connections will not be logged"));
    }
  } catch (e) {
    await metrics?.close();
    await deny?.stop();
    await controller.stop();
    throw e;
  }
  return {
    controller,
    metricsPort: metrics?.port ?? null,
    stop: async () => {
      await deny?.stop();
      await metrics?.close();
      await controller.stop();
    },
  };
}
