// Which host veths lead into one network namespace (the interfaces of one pod), as the kernel
// says: re-read whenever `ip monitor link` reports a pod interface change, so a pod's new
// interface is paired with its siblings even when the agent could not name them.
import type { Logger } from "pino";
import { listVethPeerNetns, spawnLinkMonitor, type LinkMonitor } from "../kernel/links.js";
import { groupByNetns } from "./local-pods.js";

export class VethGroups {
  /** Host veths grouped by the network namespace of their peers (only groups of two or more). */
  groups: string[][] = [];
  private monitor: LinkMonitor | null = null;
  private monitorRestart: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly target: () => { netns?: string },
    private readonly prefix: string,
    /** Called when the groups changed after a link event (not for the first read). */
    private readonly onChange: () => void,
    private readonly log: Logger | undefined,
  ) {}

  /** Watches link changes (restarting the monitor if it dies) and reads the groups once. */
  async start(): Promise<void> {
    this.watch();
    await this.refresh(false);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.monitorRestart) clearTimeout(this.monitorRestart);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    const m = this.monitor;
    this.monitor = null;
    if (m && m.pid !== undefined && m.exitCode === null && m.signalCode === null) {
      const closed = new Promise<void>((r) => m.once("close", () => r()));
      process.kill(m.pid, "SIGTERM");
      await closed;
    }
  }

  private watch(): void {
    if (this.stopped) return;
    let m: LinkMonitor;
    try {
      m = spawnLinkMonitor(this.target());
    } catch (e) {
      this.log?.warn({ err: String(e) }, "cannot watch links; interfaces of one pod are paired by name only");
      return;
    }
    this.monitor = m;
    m.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (!d.includes(` ${this.prefix}`)) return;
      // Coalesce the burst of events one veth creation makes (add, move, up).
      if (this.refreshTimer) clearTimeout(this.refreshTimer);
      this.refreshTimer = setTimeout(() => void this.refresh(true), 10);
    });
    m.stderr.resume();
    m.on("error", (e) => this.log?.warn({ err: e.message }, "link monitor failed"));
    m.on("close", () => {
      if (this.monitor === m) this.monitor = null;
      if (!this.stopped) this.monitorRestart = setTimeout(() => this.watch(), 1000);
    });
  }

  /** Re-reads which host veths lead into one namespace; `notify`: report a change. */
  private async refresh(notify: boolean): Promise<void> {
    this.refreshTimer = undefined;
    let groups: string[][];
    try {
      groups = groupByNetns(await listVethPeerNetns(this.target()), this.prefix);
    } catch (e) {
      this.log?.warn({ err: String(e) }, "could not list veths; interfaces of one pod are paired by name only");
      return;
    }
    if (JSON.stringify(groups) === JSON.stringify(this.groups)) return;
    this.groups = groups;
    if (notify && !this.stopped) this.onChange();
  }
}
