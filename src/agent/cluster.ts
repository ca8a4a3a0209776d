// The node's membership in the cluster, composed from one module per concern under cluster/:
// joining (join.ts), the lease after it (lease.ts), the pod CIDRs and backend setup (subnets.ts),
// peer routes kept equal to the live node list (peers.ts), the published report (report.ts) and
// ADD admission (admission.ts), over shared state (context.ts).
//
// Never tears down on store trouble: while the store is unreachable or the lease is lost, the
// datapath stays as it is (no syncs) and ADDs are refused with "try again later"; the lease and
// the watch re-establish themselves, and the first sync after that applies what changed meanwhile.
import type { PodRef } from "../ipam/store.js";
import { admit, unavailable } from "./cluster/admission.js";
import {
  type ClusterContext,
  type JoinResult,
  type MembershipOptions,
  type MembershipState,
  newContext,
} from "./cluster/context.js";
import { EncryptionControl } from "./cluster/encryption.js";
import { join } from "./cluster/join.js";
import { LeaseFollower } from "./cluster/lease.js";
import { applyCIDRs } from "./cluster/subnets.js";
import { PeerSync } from "./cluster/peers.js";
import { Publisher } from "./cluster/report.js";
import type { AgentReport } from "./published.js";

export type { JoinResult, MembershipOptions, MembershipState } from "./cluster/context.js";

export class Membership {
  private readonly ctx: ClusterContext;
  private readonly peers: PeerSync;
  private readonly publisher: Publisher;
  private readonly lease: LeaseFollower;

  constructor(o: MembershipOptions) {
    this.ctx = newContext(o);
    this.peers = new PeerSync(this.ctx, (delayMs) => this.publisher.schedule(delayMs));
    this.publisher = new Publisher(this.ctx, () => this.peers.lastReport);
    this.lease = new LeaseFollower(this.ctx, this.peers, this.publisher);
    if (!o.single)
      this.ctx.encryption = new EncryptionControl(this.ctx, () => {
        // The setting changed live: new data to publish, peers to sync, maybe a smaller pod MTU.
        const ceiling = this.ctx.encryption?.podMtuCeiling;
        if (o.mtu === undefined && ceiling !== undefined && ceiling < this.ctx.podMtu && this.ctx.state === "ready") {
          this.ctx.podMtu = ceiling;
          applyCIDRs(this.ctx, this.ctx.podCIDRs);
        }
        this.publisher.forget();
        this.publisher.schedule(0);
        this.peers.schedule(true);
      });
  }

  get state(): MembershipState {
    return this.ctx.state;
  }

  /** Last time the store answered (a request of ours succeeded). */
  get lastStoreContact(): number | undefined {
    return this.ctx.lastStoreContact;
  }

  get lastStoreError(): string | undefined {
    return this.ctx.lastStoreError;
  }

  get description(): string {
    return this.ctx.o.store.description;
  }

  /** The published report (what `weft status` shows for this node). */
  report(): AgentReport {
    return this.publisher.report();
  }

  /** Why an ADD cannot be served now, or null. */
  unavailable(): string | null {
    return unavailable(this.ctx);
  }

  /**
   * ADD's admission: the store must answer (the pod's labels decide its policy) and the lease must
   * be held (the subnet is ours). Throws AgentFailure code 11 otherwise.
   */
  admit(pod: PodRef | undefined): Promise<void> {
    return admit(this.ctx, pod);
  }

  /**
   * Joins: cluster settings, registration (same subnets as before after a restart), backend
   * setup, node watch and a first peer sync. Retries while the store is unreachable; throws
   * NotInitializedError (run `weft cluster init`) and other errors a person must fix.
   */
  async join(): Promise<JoinResult> {
    const r = await join(this.ctx, { lease: this.lease, peers: this.peers, publisher: this.publisher });
    this.ctx.encryption?.poll(this.ctx.o.encryptionPollMs ?? 1000);
    return r;
  }

  /** The node's pods changed: publish the count (coalesced). */
  podsChanged(): void {
    this.publisher.schedule(1000);
  }

  /**
   * Stops watching and renewing. Nothing in the kernel changes and nothing is revoked: pods keep
   * working. The lease runs out by TTL, or with handoverSeconds stays live that long for the next
   * agent: a restart that outlasts the TTL (a rolling update on a busy node) must not make peers
   * drop their routes to this node, which breaks every new connection to its pods meanwhile.
   */
  async stop(): Promise<void> {
    const wasJoined = this.ctx.state !== "joining" && this.ctx.state !== "stopped";
    this.ctx.state = "stopped";
    this.publisher.stop();
    this.lease.stop();
    await this.peers.stop();
    const seconds = this.ctx.o.handoverSeconds ?? 0;
    const lease = this.ctx.lease;
    if (wasJoined && seconds > 0 && lease?.handOver) {
      const log = this.ctx.o.log;
      // Bounded: the kubelet kills the container after its grace period (the DaemonSet's 5 s).
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no answer within 2 s")), 2000);
      });
      await Promise.race([lease.handOver(seconds), timeout]).then(
        () => log.info({ seconds }, "node lease handed over: it stays live this long for the next agent"),
        (e: unknown) =>
          log.warn(
            { err: e instanceof Error ? e.message : String(e) },
            "could not hand the node lease over; it runs out by its TTL",
          ),
      );
      clearTimeout(timer);
    }
    await this.ctx.encryption?.stop().catch(() => undefined);
    await this.ctx.o.store.close().catch(() => undefined);
  }
}
