// The node's lease after joining: lost (store unreachable too long) stops syncs and ADDs, keeping
// the datapath; re-established takes up the subnets the store gives back (other ones after a long outage).
import type { NodeInfo, NodeLease } from "../../store/types.js";
import { encodeBackendData } from "../published.js";
import { type ClusterContext, contact } from "./context.js";
import type { PeerSync } from "./peers.js";
import type { Publisher } from "./report.js";
import { applyCIDRs, setupBackend } from "./subnets.js";

export class LeaseFollower {
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly ctx: ClusterContext,
    private readonly peers: PeerSync,
    private readonly publisher: Publisher,
  ) {}

  follow(lease: NodeLease): void {
    const log = this.ctx.o.log;
    this.unsubscribe = lease.onStateChange((s) => {
      if (this.ctx.state === "stopped") return;
      if (s.state === "lost") {
        this.ctx.state = "lost";
        this.ctx.lastStoreError = s.error.message;
        log.error(
          { err: s.error.message },
          "node lease lost: the datapath stays as it is; ADDs are refused until it is back",
        );
      } else {
        this.restored(s.node).catch((e: unknown) =>
          log.error({ err: String(e) }, "could not take up the re-established lease"),
        );
      }
    });
  }

  stop(): void {
    this.unsubscribe?.();
  }

  private async restored(node: NodeInfo): Promise<void> {
    const { ctx } = this;
    const log = ctx.o.log;
    contact(ctx);
    if (node.podCIDRs.join() !== ctx.podCIDRs.join()) {
      // The subnet went to the pool during a long outage. Running pods keep their addresses (they
      // lose cross-node routes: `weft status` counts them as stranded); new pods get the new subnet.
      log.error(
        { old: ctx.podCIDRs, new: node.podCIDRs },
        "lease re-established with other pod CIDRs: new pods use the new ones; pods with old addresses must be re-created",
      );
      try {
        if (ctx.backend) {
          await setupBackend(ctx, node.podCIDRs);
          await ctx.lease!.update({ backendData: encodeBackendData(ctx.backendData, undefined, ctx.encryption?.data) });
        }
      } catch (e) {
        log.error({ err: String(e) }, "could not move the backend to the new pod CIDRs");
      }
      applyCIDRs(ctx, node.podCIDRs);
    }
    if (ctx.state === "stopped") return;
    ctx.state = "ready";
    this.publisher.forget();
    log.info({ podCIDRs: node.podCIDRs }, "node lease re-established");
    this.peers.schedule(true);
    this.publisher.schedule(0);
  }
}
