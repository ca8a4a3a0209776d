// What the node publishes in its registration: the backend's data and the agent's report (health,
// pods, peers), written through the lease only when it changed.
import type { SyncReport } from "../../backends/index.js";
import { type AgentReport, encodeBackendData, reportFromSync } from "../published.js";
import { type ClusterContext, contact } from "./context.js";

export class Publisher {
  private published: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** lastSync: the peer sync's last report (undefined before the first, and on a single host). */
  constructor(
    private readonly ctx: ClusterContext,
    private readonly lastSync: () => SyncReport | undefined,
  ) {}

  /** The published report (what `weft status` shows for this node). */
  report(): AgentReport {
    const { o } = this.ctx;
    const pods = o.pods();
    const base = {
      backend: o.single ? "none (single host)" : (this.ctx.settings?.backend ?? "unknown"),
      podMtu: this.ctx.podMtu,
      pods: pods.count,
      ...(pods.stranded ? { strandedPods: pods.stranded } : {}),
      ...(this.ctx.device ? { device: { name: this.ctx.device.name, offloads: { ...this.ctx.device.offloads } } } : {}),
    };
    const last = this.lastSync() ?? { peers: [], changes: [], errors: [] };
    // A peer-write door that failed to open is the node's own error (health "degraded").
    const netlinkError = o.kernel?.peerWrites?.netlinkError;
    const r = reportFromSync(netlinkError ? { ...last, errors: [...last.errors, netlinkError] } : last, base);
    const enc = this.ctx.encryption?.report();
    return enc && enc.type !== "none" ? { ...r, encryption: enc } : r;
  }

  /** Publishes after delayMs (a publish already scheduled stays as it is). */
  schedule(delayMs: number): void {
    if (this.timer || this.ctx.state === "stopped") return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.publish();
    }, delayMs);
  }

  /** The store may have lost what was published (a re-established lease): the next publish writes. */
  forget(): void {
    this.published = undefined;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  private async publish(): Promise<void> {
    const { lease } = this.ctx;
    if (!lease || this.ctx.state !== "ready") return;
    const data = encodeBackendData(this.ctx.backendData, this.report(), this.ctx.encryption?.data);
    const text = JSON.stringify(data);
    if (text === this.published) return;
    try {
      await lease.update({ backendData: data });
      this.published = text;
      contact(this.ctx);
    } catch (e) {
      this.ctx.o.log.debug({ err: String(e) }, "could not publish the node report; retrying later");
      this.schedule(2000);
    }
  }
}
