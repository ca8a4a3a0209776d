// What every NodeLease implementation shares: its state listeners, and re-registering by itself
// with backoff after the lease was lost, until that works or the lease is released. How a lease
// is held (etcd leases, Kubernetes Lease objects) is the subclass's.
import type { LeaseState, NodeInfo, NodeLease } from "./types.js";

export abstract class RecoveringLease implements Pick<NodeLease, "node" | "onStateChange"> {
  node!: NodeInfo;
  protected stopped = false;
  protected recovering = false;
  private readonly listeners = new Set<(s: LeaseState) => void>();

  /** Registers (again): takes the node record and its subnets under fresh leases. */
  abstract establish(): Promise<void>;

  /** A registration that completed after the lease was released: let its leases go. */
  protected abandon(): void {}

  /** Reports the loss and re-registers in the background. */
  protected startRecovery(error: Error): void {
    this.recovering = true;
    this.emit({ state: "lost", error });
    void this.recover();
  }

  private async recover(): Promise<void> {
    let delay = 200;
    while (!this.stopped) {
      try {
        await this.establish();
        this.recovering = false;
        if (this.stopped) {
          this.abandon();
          return;
        }
        this.emit({ state: "restored", node: this.node });
        return;
      } catch {
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  private emit(s: LeaseState): void {
    for (const l of this.listeners) {
      // A listener's bug must not stop the others, nor be swallowed.
      try {
        l(s);
      } catch (e) {
        setImmediate(() => {
          throw e;
        });
      }
    }
  }

  onStateChange(listener: (s: LeaseState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
