// Encryption between nodes (src/encryption/), following the cluster's encryption setting live:
// started after the node knows its pod CIDRs, its data published beside the backend's, synced with
// the node list after every peer sync, and switched on, off or between types when the setting
// changes (read every pollMs; no agent restart). On agent stop the daemon keeps running.
import { createEncryption, ENCRYPTION_DATA_KEY, type Encryption, type EncryptionPeer } from "../../encryption/index.js";
import type { EncryptionData, EncryptionStatus } from "../../encryption/types.js";
import type { EncryptionSettings, NodeInfo } from "../../store/types.js";
import { type ClusterContext, dualStack } from "./context.js";

/** What the node publishes about its encryption in its report (`weft status`). */
export interface EncryptionReport {
  type: string;
  strict: boolean;
  podMtuCeiling?: number;
  status?: EncryptionStatus;
  error?: string;
}

export class EncryptionControl {
  private enc: Encryption | undefined;
  private setting: EncryptionSettings = { type: "none", strict: true, nodeToNode: false };
  private applied = "";
  private lastStatus: EncryptionStatus | undefined;
  private error: string | undefined;
  private ceiling: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> = Promise.resolve();
  /** The data to publish under ENCRYPTION_DATA_KEY (JSON), or undefined (encryption off). */
  data: EncryptionData | undefined;

  constructor(
    private readonly ctx: ClusterContext,
    /** The setting changed and was applied: re-sync peers, republish, hand on the new MTU. */
    private readonly changed: () => void,
  ) {}

  /** The pod MTU the encryption can carry (undefined when off). */
  get podMtuCeiling(): number | undefined {
    return this.ceiling;
  }

  report(): EncryptionReport {
    return {
      type: this.setting.type,
      strict: this.setting.strict,
      ...(this.ceiling !== undefined ? { podMtuCeiling: this.ceiling } : {}),
      ...(this.lastStatus ? { status: this.lastStatus } : {}),
      ...(this.error ? { error: this.error } : {}),
    };
  }

  /** Makes the running encryption match the setting (serialized; a failure is reported, retried on the next poll). */
  apply(setting: EncryptionSettings): Promise<void> {
    this.busy = this.busy.then(() => this.applyNow(setting)).catch(() => undefined);
    return this.busy;
  }

  private async applyNow(setting: EncryptionSettings): Promise<void> {
    // The pod CIDRs are part of what is applied: the guard exempts them.
    const key = JSON.stringify([setting, this.ctx.podCIDRs]);
    if (key === this.applied && (setting.type === "none" || this.enc)) return;
    const { o } = this.ctx;
    const log = o.log;
    try {
      const prev = this.setting;
      if (
        this.enc &&
        (prev.type !== setting.type || prev.strict !== setting.strict || prev.nodeToNode !== setting.nodeToNode)
      ) {
        // A different type or mode: the old one goes (strict guard last, inside stop()).
        if (prev.type !== setting.type || (prev.strict && !setting.strict)) await this.enc.stop({ teardown: true });
        this.enc = undefined;
      }
      this.setting = setting;
      this.data = undefined;
      this.ceiling = undefined;
      this.lastStatus = undefined;
      if (setting.type !== "none") {
        if (!o.stateDir) throw new Error("encryption needs the agent's state dir");
        this.enc = await createEncryption(setting, {
          stateDir: o.stateDir,
          ...(o.kernel ? { kernel: o.kernel } : {}),
        });
        const res = await this.enc!.start({
          name: o.node,
          underlay: dualStack(o.underlay),
          podCIDRs: dualStack(this.ctx.podCIDRs),
          clusterCIDRs: this.ctx.settings?.clusterCIDRs ?? [],
        });
        this.data = res.data;
        this.ceiling = res.podMtu;
        log.info(
          {
            type: setting.type,
            device: res.device,
            adopted: res.adopted,
            changes: res.changes.map((c) => `${c.action} ${c.object} ${c.detail}`),
          },
          "encryption started",
        );
      } else if (this.applied) log.info("encryption off");
      this.applied = key;
      this.error = undefined;
      this.changed();
    } catch (e) {
      this.error = (e as Error).message;
      log.error({ err: this.error }, "encryption could not be set up; retrying");
    }
  }

  /** Converges the peers (after each backend peer sync). */
  async sync(nodes: readonly NodeInfo[]): Promise<void> {
    await this.busy;
    const enc = this.enc;
    if (!enc) return;
    const peers: EncryptionPeer[] = nodes.map((n) => ({
      name: n.name,
      underlay: dualStack(n.addresses),
      podCIDRs: dualStack(n.podCIDRs),
      data: readEncryptionData(n.backendData),
    }));
    try {
      const r = await enc.sync(peers);
      this.lastStatus = r.status;
      if (r.changes.length)
        this.ctx.o.log.info(
          { changes: r.changes.map((c) => `${c.action} ${c.object} ${c.detail}`) },
          "encryption peers synced",
        );
      const bad = r.status.peers.filter((p) => !p.ok);
      if (bad.length)
        this.ctx.o.log.warn(
          { peers: bad.map((p) => ({ peer: p.name, errors: p.errors })) },
          "some peers cannot be encrypted to",
        );
    } catch (e) {
      this.error = `peer sync: ${(e as Error).message}`;
      this.ctx.o.log.error({ err: this.error }, "encryption peer sync failed; will retry");
    }
  }

  /** Reads the setting every pollMs and applies changes. */
  poll(pollMs: number): void {
    this.timer = setInterval(() => {
      if (this.ctx.state !== "ready") return;
      void this.ctx.o.store
        .getClusterSettings()
        .then((s) => (s ? this.apply(s.encryption) : undefined))
        .catch(() => undefined);
    }, pollMs);
    this.timer.unref();
  }

  /** Agent stop: the daemon and its kernel state stay (pods keep their encrypted paths). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.busy;
    await this.enc?.stop({ teardown: false });
  }
}

/** A node's published encryption data; undefined when absent or unreadable (the peer is then "no key"). */
export function readEncryptionData(d: Record<string, string>): EncryptionData | undefined {
  const raw = d[ENCRYPTION_DATA_KEY];
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw) as unknown;
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as EncryptionData;
    return { type: "unreadable" };
  } catch {
    return { type: "unreadable" };
  }
}
