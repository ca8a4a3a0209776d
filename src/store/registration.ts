// Node registration as every store does it, written once: the defaults, the checks of a
// registration request, which node subnet to claim in each cluster CIDR, and the compare-and-swap
// loop that claims one (own subnet back first, then a free one picked from the node's name; give up
// after MAX_CAS_ATTEMPTS lost races). How a claim is stored and held is each store's (etcd/SQLite
// keys under a lease, Kubernetes Lease objects).
import { formatCidr, pickFreeSubnet, subnetCount, subnetIndex } from "../net/cidr.js";
import { ConflictError, ExhaustedError, NotInitializedError } from "./errors.js";
import type { ClusterSettings, NodeLease, NodeRegistration, RegisterOptions } from "./types.js";
import { normalizeRegistration, parseCidr, wholeSeconds } from "./validate.js";

export const DEFAULT_TTL_SECONDS = 15;
export const DEFAULT_SUBNET_GRACE_SECONDS = 300;
/** How many compare-and-swap rounds may be lost before giving up (20 racing agents need a few). */
export const MAX_CAS_ATTEMPTS = 64;

/** A lease that registers itself (again, after a loss: see RecoveringLease). */
export interface EstablishingLease extends NodeLease {
  establish(): Promise<void>;
}

/**
 * registerNode() of every store: checks the request and options, then establishes a lease made
 * by `make` and hands it to `keep` (the store's set of leases, stopped on close).
 */
export async function registerNode<L extends EstablishingLease>(
  reg: NodeRegistration,
  options: RegisterOptions,
  make: (r: NodeRegistration, ttlSeconds: number, graceSeconds: number) => L,
  keep: (lease: L) => void,
): Promise<L> {
  const r = normalizeRegistration(reg);
  const ttl = wholeSeconds("lease TTL", options.ttlSeconds ?? DEFAULT_TTL_SECONDS);
  const grace = wholeSeconds("subnet grace period", options.subnetGraceSeconds ?? DEFAULT_SUBNET_GRACE_SECONDS);
  const lease = make(r, ttl, grace);
  await lease.establish();
  keep(lease);
  return lease;
}

/** The node subnet to claim in each cluster CIDR, in the settings' order; NotInitializedError without settings. */
export function subnetPlan(
  settings: ClusterSettings | undefined,
  where: string,
): Array<{ clusterCIDR: string; prefix: number }> {
  if (!settings) throw new NotInitializedError(where);
  return settings.clusterCIDRs.map((c) => ({
    clusterCIDR: c,
    prefix: parseCidr(c).family === 4 ? settings.nodeSubnetPrefix.v4 : settings.nodeSubnetPrefix.v6,
  }));
}

/** How a store claims subnets; each step answers undefined when it lost a race (the loop retries). */
export interface ClaimSteps<C extends { cidr: string; node: string }, H> {
  /** Every claim in the store now. */
  list(): Promise<C[]>;
  /** Claims that block a pick (Kubernetes: only unexpired ones). Default: all. */
  blocking?(claims: C[]): C[];
  /** Take this node's own claim back (same subnet after a restart). */
  reuse(own: C): Promise<H | undefined>;
  /** Claim the free subnet `cidr` (claims: the list it was picked from). */
  take(cidr: string, claims: C[]): Promise<H | undefined>;
}

export async function claimSubnet<C extends { cidr: string; node: string }, H>(
  node: string,
  clusterCIDR: string,
  prefix: number,
  steps: ClaimSteps<C, H>,
): Promise<{ cidr: string; held: H }> {
  const cluster = parseCidr(clusterCIDR);
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const claims = await steps.list();
    // A restarted agent gets its own subnet back while the reservation lasts.
    const own = claims.find((c) => c.node === node && subnetIndex(cluster, prefix, parseCidr(c.cidr)) !== undefined);
    if (own) {
      const held = await steps.reuse(own);
      if (held !== undefined) return { cidr: own.cidr, held };
      continue;
    }
    const taken = new Set((steps.blocking ? steps.blocking(claims) : claims).map((c) => c.cidr));
    const pick = pickFreeSubnet(cluster, prefix, taken, attempt === 0 ? node : `${node}#${attempt}`);
    if (!pick) {
      throw new ExhaustedError(
        `no free /${prefix} node subnet is left in ${clusterCIDR} (${subnetCount(cluster, prefix)} in all, held by live nodes or reserved for dead ones during their grace period): use a larger cluster CIDR or remove dead nodes with \`weft node delete\``,
      );
    }
    const cidr = formatCidr(pick);
    const held = await steps.take(cidr, claims);
    if (held !== undefined) return { cidr, held };
  }
  throw new ConflictError(
    "Contention",
    `node ${node} lost the race for a subnet of ${clusterCIDR} ${MAX_CAS_ATTEMPTS} times in a row: too many agents registering at once; retry`,
  );
}
