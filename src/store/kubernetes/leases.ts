// The node's liveness as weft's own Lease (kube-system/weft-node-<name>; kube-node-lease/<name> is
// the kubelet's heartbeat and weft never writes it), and the NodeLease that holds it and the node's
// subnet claims: renews them every TTL/3, re-registers when one is
// lost (RecoveringLease), deletes them on release, extends them for the next agent on handOver.
import { RecoveringLease } from "../recovering-lease.js";
import { MAX_CAS_ATTEMPTS } from "../registration.js";
import {
  ConflictError,
  InvalidError,
  UnavailableError,
  type NodeInfo,
  type NodeLease,
  type NodeRegistration,
} from "../types.js";
import { normalizeRegistration } from "../validate.js";
import { getOrUndefined, isApiError, microTime, type Json, type KubeClient } from "./client.js";
import {
  A_ADDRESSES,
  A_BACKEND,
  A_NODE,
  NODE_LEASE_LABEL,
  NODE_LEASE_NAMESPACE,
  metaOf,
  nodeLeaseName,
  nodeLeasePath,
  nodePath,
} from "./layout.js";
import { decodeNode, syncAddresses } from "./nodes.js";

/** A node Lease or subnet claim that weft renews: its path and the object last written. */
export interface Held {
  path: string;
  obj: Json;
  /** Taken anew in this registration round (the liveness Lease, a new claim; not a reservation renewed): undone if the round fails. */
  fresh?: boolean;
}

/** Thrown by a renewal that finds the lease or a claim gone or taken: the registration is lost. */
export class LostError extends Error {}

export function leaseBody(
  name: string,
  namespace: string,
  holder: string,
  seconds: number,
  extra: { labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: Json[] } = {},
): Json {
  const now = microTime();
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name, namespace, ...extra },
    spec: { holderIdentity: holder, leaseDurationSeconds: seconds, acquireTime: now, renewTime: now },
  };
}

export async function upsertNodeLease(client: KubeClient, name: string, ttl: number, nodeUid: string): Promise<Held> {
  const path = nodeLeasePath(name);
  const ownerReferences = [{ apiVersion: "v1", kind: "Node", name, uid: nodeUid }];
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const cur = await getOrUndefined(client, path);
    try {
      if (!cur) {
        const obj = await client.request("POST", nodeLeasePath(), {
          body: leaseBody(nodeLeaseName(name), NODE_LEASE_NAMESPACE, name, ttl, {
            ownerReferences,
            labels: { [NODE_LEASE_LABEL]: "true" },
            annotations: { [A_NODE]: name },
          }),
        });
        return { path, obj, fresh: true };
      }
      const now = microTime();
      const spec = {
        ...(cur.spec as Json),
        holderIdentity: name,
        leaseDurationSeconds: ttl,
        acquireTime: now,
        renewTime: now,
      };
      const obj = await client.request("PUT", path, {
        body: { ...cur, metadata: { ...(cur.metadata as Json), ownerReferences }, spec },
      });
      return { path, obj, fresh: true };
    } catch (err) {
      if (!isApiError(err, 409)) throw err;
    }
  }
  throw new ConflictError(
    "Contention",
    `Lease ${NODE_LEASE_NAMESPACE}/${nodeLeaseName(name)} kept changing while weft registered the node; retry`,
  );
}

/** Renews one held Lease; a lease that is gone or now held by someone else means we lost it. */
export async function renewHeld(client: KubeClient, h: Held, holder: string): Promise<Held> {
  let cur = h.obj;
  for (let attempt = 0; attempt < 5; attempt++) {
    const spec = { ...(cur.spec as Json), renewTime: microTime() };
    try {
      return { path: h.path, obj: await client.request("PUT", h.path, { body: { ...cur, spec } }) };
    } catch (err) {
      if (isApiError(err, 404)) throw new LostError(`${h.path} was deleted`);
      if (!isApiError(err, 409)) throw err;
    }
    try {
      cur = await client.request("GET", h.path);
    } catch (err) {
      if (isApiError(err, 404)) throw new LostError(`${h.path} was deleted`);
      throw err;
    }
    const now = (cur.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
    if (now !== holder) throw new LostError(`${h.path} is now held by ${now ?? "nobody"}`);
  }
  throw new UnavailableError(`${h.path} kept changing while being renewed`);
}

export async function deleteIfHeld(client: KubeClient, h: Held): Promise<void> {
  try {
    await client.request("DELETE", h.path, {
      body: {
        apiVersion: "v1",
        kind: "DeleteOptions",
        preconditions: { resourceVersion: metaOf(h.obj).resourceVersion },
      },
    });
  } catch (err) {
    // Gone, or renewed by someone else since (a restarted agent): not ours to delete.
    if (!isApiError(err, 404) && !isApiError(err, 409)) throw err;
  }
}

/** What a node lease needs of its store. */
export interface KubeNodeHost {
  readonly client: KubeClient;
  registerOnce(r: NodeRegistration, ttl: number, grace: number): Promise<{ node: NodeInfo; held: Held[] }>;
  forget(lease: KubeNodeLease): void;
}

export class KubeNodeLease extends RecoveringLease implements NodeLease {
  private held: Held[] = [];
  private timer?: NodeJS.Timeout;
  private lastRenewed = 0;
  private inflight: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: KubeNodeHost,
    private reg: NodeRegistration,
    private readonly ttl: number,
    private readonly grace: number,
  ) {
    super();
  }

  async establish(): Promise<void> {
    const { node, held } = await this.store.registerOnce(this.reg, this.ttl, this.grace);
    this.node = node;
    this.held = held;
    this.lastRenewed = Date.now();
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(
      () => {
        this.inflight = this.renewAll();
      },
      (this.ttl * 1000) / 3,
    );
    this.timer.unref?.();
  }

  private async renewAll(): Promise<void> {
    if (this.stopped || this.recovering) return;
    try {
      const next: Held[] = [];
      for (const h of this.held) next.push(await renewHeld(this.store.client, h, this.reg.name));
      // Kept even if released meanwhile: release() deletes by the latest resourceVersion.
      this.held = next;
      if (this.stopped) return;
      this.lastRenewed = Date.now();
      this.schedule();
    } catch (err) {
      if (this.stopped) return;
      // Unreachable for less than a TTL: others still see the node; keep trying.
      if (!(err instanceof LostError) && Date.now() - this.lastRenewed < this.ttl * 1000) {
        this.schedule();
        return;
      }
      this.lost(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private lost(err: Error): void {
    if (this.stopped || this.recovering) return;
    clearTimeout(this.timer);
    this.startRecovery(
      err instanceof LostError
        ? new UnavailableError(`node ${this.reg.name} lost its registration (${err.message}); re-registering`)
        : err,
    );
  }

  async update(patch: { addresses?: string[]; backendData?: Record<string, string> }): Promise<NodeInfo> {
    if (this.stopped) throw new InvalidError(`node ${this.reg.name}: the lease was released`);
    if (this.recovering)
      throw new UnavailableError(
        `node ${this.reg.name}: the registration is being re-established after a store outage; retry shortly`,
      );
    const r = normalizeRegistration({ ...this.reg, ...patch });
    const client = this.store.client;
    // A merge patch of weft's own annotations only (the kubelet and others own the rest).
    let out = await client.request("PATCH", nodePath(r.name), {
      contentType: "application/merge-patch+json",
      body: {
        metadata: {
          annotations: { [A_BACKEND]: JSON.stringify(r.backendData ?? {}), [A_ADDRESSES]: r.addresses.join(",") },
        },
      },
    });
    out = await syncAddresses(
      client,
      out,
      r.addresses.map((address) => ({ type: "InternalIP", address })),
    );
    this.reg = r;
    this.node = decodeNode(out)!;
    return this.node;
  }

  /** Stops renewing (store close: the Leases run out by themselves, as after a crash). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /**
   * The node Lease renewed with leaseDurationSeconds = max(seconds, TTL), and the subnet claims renewed
   * (they last TTL + grace from now): peers keep the node while the next agent starts, which takes the
   * Lease back at the TTL when it registers. A Lease gone or taken meanwhile is left alone.
   */
  async handOver(seconds: number): Promise<void> {
    this.stop();
    this.store.forget(this);
    await this.inflight.catch(() => undefined);
    if (this.recovering) return;
    const [nodeLease, ...claims] = this.held;
    const client = this.store.client;
    for (const c of claims) await renewHeld(client, c, this.reg.name).catch(() => undefined);
    if (!nodeLease) return;
    const cur = nodeLease.obj;
    if ((cur.spec as { holderIdentity?: string } | undefined)?.holderIdentity !== this.reg.name) return;
    const spec = { ...(cur.spec as Json), leaseDurationSeconds: Math.max(seconds, this.ttl), renewTime: microTime() };
    try {
      await client.request("PUT", nodeLease.path, { body: { ...cur, spec } });
    } catch (err) {
      // Gone, or renewed by someone else since (the next agent already): not ours to extend.
      if (!isApiError(err, 404) && !isApiError(err, 409)) throw err;
    }
  }

  async release(options: { freeSubnets?: boolean } = {}): Promise<void> {
    this.stop();
    this.store.forget(this);
    await this.inflight; // a renewal in flight would change the resourceVersion under the delete
    const [nodeLease, ...claims] = this.held;
    if (nodeLease) await deleteIfHeld(this.store.client, nodeLease);
    if (options.freeSubnets) await Promise.all(claims.map((c) => deleteIfHeld(this.store.client, c)));
  }
}
