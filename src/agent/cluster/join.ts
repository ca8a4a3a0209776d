// Joining the cluster: the settings, registration under the TTL lease (with the subnets this node
// held before, so a restart changes nothing for peers), backend setup, then the node watch and a
// first peer sync. Retries while the store is unreachable.
import { createBackend } from "../../backends/index.js";
import { ConflictError, isStoreError, NotInitializedError } from "../../store/errors.js";
import type { ClusterSettings } from "../../store/types.js";
import { AgentCode, AgentFailure } from "../codes.js";
import { encodeBackendData } from "../published.js";
import { type ClusterContext, contact, type JoinResult } from "./context.js";
import type { LeaseFollower } from "./lease.js";
import type { PeerSync } from "./peers.js";
import type { Publisher } from "./report.js";
import { applyCIDRs, setupBackend } from "./subnets.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The parts join() starts once registered. */
export interface JoinParts {
  lease: LeaseFollower;
  peers: PeerSync;
  publisher: Publisher;
}

/**
 * Joins: cluster settings, registration (same subnets as before after a restart), backend
 * setup, node watch and a first peer sync. Retries while the store is unreachable; throws
 * NotInitializedError (run `weft cluster init`) and other errors a person must fix.
 */
export async function join(ctx: ClusterContext, parts: JoinParts): Promise<JoinResult> {
  const { o } = ctx;
  const log = o.log;
  const settings = await retry(ctx, "read the cluster settings", () => readSettings(ctx));
  ctx.settings = settings;
  if (!o.single) {
    ctx.backend = createBackend(settings.backend, {
      ...(o.kernel ? { kernel: o.kernel } : {}),
      ...(o.stateDir ? { stateDir: o.stateDir } : {}),
      ...(settings.bgp ? { bgp: settings.bgp } : {}),
      clusterCIDRs: settings.clusterCIDRs,
      ...(settings.mtu !== undefined ? { mtu: settings.mtu } : {}),
    });
    if (o.underlay.length === 0)
      throw new AgentFailure(
        AgentCode.InvalidConfig,
        "no underlay address found in this namespace: pass --underlay-address IP",
      );
  }
  // Set the backend up with the subnets this node held before (a restart), so the registration
  // already carries the right backend data: peers then see no change at all.
  let setupChanges = 0;
  const previous = ctx.backend ? await retry(ctx, "look up this node's subnets", () => previousCIDRs(ctx)) : [];
  if (previous.length) setupChanges += await setupBackend(ctx, previous);
  // Encryption before registering again (a restart): the registration then carries the same key,
  // so peers never see it vanish.
  if (previous.length && ctx.encryption && settings.encryption.type !== "none") {
    ctx.podCIDRs = previous;
    await ctx.encryption.apply(settings.encryption);
  }
  const lease = await retry(ctx, "register the node", () =>
    o.store.registerNode(
      {
        name: o.node,
        addresses: o.underlay,
        ...(ctx.backend && previous.length
          ? { backendData: encodeBackendData(ctx.backendData, undefined, ctx.encryption?.data) }
          : {}),
      },
      {
        ...(o.ttlSeconds ? { ttlSeconds: o.ttlSeconds } : {}),
        ...(o.subnetGraceSeconds ? { subnetGraceSeconds: o.subnetGraceSeconds } : {}),
      },
    ),
  );
  ctx.lease = lease;
  contact(ctx);
  const node = lease.node;
  log.debug({ podCIDRs: node.podCIDRs, msSinceStart: Math.round(performance.now()) }, "registered");
  if (ctx.backend && node.podCIDRs.join() !== previous.join()) {
    setupChanges += await setupBackend(ctx, node.podCIDRs);
    await retry(ctx, "publish the backend data", () =>
      lease.update({ backendData: encodeBackendData(ctx.backendData, undefined, ctx.encryption?.data) }),
    );
  }
  if (ctx.backend && ctx.encryption) {
    ctx.podCIDRs = node.podCIDRs;
    await ctx.encryption.apply(settings.encryption);
  }
  ctx.podMtu = o.mtu ?? (ctx.backend ? ctx.podMtu : await (o.singleHostMtu?.() ?? Promise.resolve(1500)));
  // Encrypted pod packets must fit the encryption device (WireGuard: underlay MTU - 60).
  const ceiling = ctx.encryption?.podMtuCeiling;
  if (o.mtu === undefined && ceiling !== undefined) ctx.podMtu = Math.min(ctx.podMtu, ceiling);
  applyCIDRs(ctx, node.podCIDRs);
  parts.lease.follow(lease);
  let firstSyncChanges = 0;
  if (ctx.backend) {
    await parts.peers.watchNodes();
    await parts.peers.watchObjects();
    ctx.state = "ready";
    firstSyncChanges = await parts.peers.firstSync();
  } else {
    ctx.state = "ready";
  }
  parts.publisher.schedule(0);
  return {
    settings,
    podCIDRs: node.podCIDRs,
    mtu: ctx.podMtu,
    setupChanges,
    firstSyncChanges,
    peers: Math.max(0, parts.peers.nodeCount - 1),
  };
}

async function readSettings(ctx: ClusterContext): Promise<ClusterSettings> {
  const { o } = ctx;
  if (o.single) {
    const pools = o.single.pools;
    const v4 = pools.find((p) => p.family === 4);
    const v6 = pools.find((p) => p.family === 6);
    const want = pools.map((p) => p.cidr);
    try {
      const { settings } = await o.store.initCluster({
        clusterCIDRs: want,
        backend: "host-gw",
        nodeSubnetPrefix: { ...(v4 ? { v4: v4.prefix } : {}), ...(v6 ? { v6: v6.prefix } : {}) },
      });
      return settings;
    } catch (e) {
      if (e instanceof ConflictError && e.reason === "AlreadyInitialized") {
        const have = await o.store.getClusterSettings();
        throw new AgentFailure(
          AgentCode.InvalidConfig,
          `the state dir's store was set up for pod CIDR ${have?.clusterCIDRs.join(",") ?? "?"}, not ${want.join(",")}: give the same --pod-cidr or use a fresh --state-dir`,
        );
      }
      throw e;
    }
  }
  const s = await o.store.getClusterSettings();
  if (!s) throw new NotInitializedError(o.store.description);
  return s;
}

/** The subnets this node held before: its live record's, else its reserved claims. */
async function previousCIDRs(ctx: ClusterContext): Promise<string[]> {
  const { o } = ctx;
  const live = await o.store.getNode(o.node);
  if (live) return live.podCIDRs;
  const claims = (await o.store.listSubnetClaims()).filter((c) => c.node === o.node);
  // In the order of the cluster CIDRs, as registration returns them.
  const order = ctx.settings?.clusterCIDRs ?? [];
  const fam = (c: string) => (c.includes(":") ? 6 : 4);
  return order
    .map((cc) => claims.find((c) => fam(c.cidr) === fam(cc))?.cidr)
    .filter((c): c is string => c !== undefined);
}

/** Runs fn until it succeeds; retries only while the store is unreachable. */
async function retry<T>(ctx: ClusterContext, what: string, fn: () => Promise<T>): Promise<T> {
  let delay = 200;
  for (let attempt = 1; ; attempt++) {
    if (ctx.state === "stopped") throw new AgentFailure(AgentCode.TryAgainLater, "the agent is stopping");
    try {
      return await fn();
    } catch (e) {
      if (!isStoreError(e, "Unavailable") && !isStoreError(e, "Exhausted")) throw e;
      ctx.lastStoreError = e.message;
      ctx.o.log.warn({ attempt, err: e.message }, `could not ${what}; retrying`);
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  }
}
