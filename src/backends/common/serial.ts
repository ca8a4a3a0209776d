// The one place that makes a backend's public verbs run one at a time, in call order: setup,
// syncs and teardown of one backend must never interleave their reads and writes (a sync diffing
// state another sync is changing). Each backend writes doSetup/doSync/doTeardown only.
import type { KernelContext } from "../../kernel/tracked.js";
import type { IpFamily } from "../../net/ip.js";
import {
  DEFAULT_ROUTE_PROTOCOL,
  type Backend,
  type BackendName,
  type BackendOptions,
  type LocalNode,
  type PeerNode,
  type SetupResult,
  type SyncOptions,
  type SyncReport,
} from "../types.js";
import type { KernelMemo } from "./reconcile.js";

export abstract class SerialBackend implements Backend {
  abstract readonly name: BackendName;
  protected readonly ctx: KernelContext;
  /** The route protocol number that marks this backend's routes. */
  protected readonly proto: number;
  /** What the last complete sync wrote (see reconcile.ts); setup and teardown forget it. */
  protected readonly memo: KernelMemo = {};
  private tail: Promise<unknown> = Promise.resolve();

  constructor(protected readonly opts: BackendOptions = {}) {
    this.ctx = opts.kernel ?? {};
    this.proto = opts.routeProtocol ?? DEFAULT_ROUTE_PROTOCOL;
  }

  abstract overhead(underlayFamily: IpFamily): number;

  setup(local: LocalNode): Promise<SetupResult> {
    return this.serially(() => {
      this.memo.view = undefined;
      return this.doSetup(local);
    });
  }

  syncPeers(peers: readonly PeerNode[], options: SyncOptions = {}): Promise<SyncReport> {
    return this.serially(() => this.doSync(peers, options));
  }

  teardown(): Promise<void> {
    return this.serially(() => {
      this.memo.view = undefined;
      return this.doTeardown();
    });
  }

  protected abstract doSetup(local: LocalNode): Promise<SetupResult>;
  protected abstract doSync(peers: readonly PeerNode[], options: SyncOptions): Promise<SyncReport>;
  protected abstract doTeardown(): Promise<void>;

  /** Runs op after every earlier one has settled; a failed op does not stop the ones after it. */
  private serially<T>(op: () => Promise<T>): Promise<T> {
    const next = this.tail.then(op, op);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
