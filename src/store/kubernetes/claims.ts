// Subnet claims (podCIDRSource "weft") as coordination.k8s.io Leases in kube-system (one per node subnet, named after it):
// created only if absent, renewed by resourceVersion, taken over once expired.
import { claimSubnet, MAX_CAS_ATTEMPTS } from "../registration.js";
import { ConflictError, type SubnetClaim } from "../types.js";
import { isApiError, microTime, type Json, type KubeClient } from "./client.js";
import {
  A_CIDR,
  A_CLAIMED_AT,
  CLAIM_LABEL,
  CLAIM_NAMESPACE,
  claimName,
  claimPath,
  leaseExpiry,
  metaOf,
} from "./layout.js";
import { leaseBody, type Held } from "./leases.js";

/** A claim as stored: which subnet, held by which node, until when; obj is the Lease itself. */
export type Claim = SubnetClaim & { expires: number; name: string; obj: Json };

function decodeClaim(l: Json): Claim | undefined {
  const meta = metaOf(l);
  const cidr = meta.annotations?.[A_CIDR];
  const holder = (l.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
  if (!cidr || !holder) return undefined;
  const obj = { ...l, apiVersion: "coordination.k8s.io/v1", kind: "Lease" };
  return {
    cidr,
    node: holder,
    claimedAt: meta.annotations?.[A_CLAIMED_AT] ?? "",
    expires: leaseExpiry(l),
    name: meta.name,
    obj,
  };
}

export async function listClaims(client: KubeClient): Promise<Claim[]> {
  const res = await client.request<{ items?: Json[] }>("GET", claimPath(), {
    query: { labelSelector: `${CLAIM_LABEL}=true` },
  });
  return (res.items ?? []).flatMap((o) => decodeClaim(o) ?? []);
}

/** Holds the claim Lease `cur` for `node` (fresh: a takeover of someone else's expired claim); undefined if it lost a race. */
async function takeOver(
  client: KubeClient,
  node: string,
  seconds: number,
  cur: Json,
  fresh: boolean,
): Promise<Held | undefined> {
  const spec: Json = {
    ...(cur.spec as Json),
    holderIdentity: node,
    leaseDurationSeconds: seconds,
    renewTime: microTime(),
  };
  if (fresh) {
    spec.acquireTime = spec.renewTime;
    spec.leaseTransitions = Number(spec.leaseTransitions ?? 0) + 1;
  }
  const meta = cur.metadata as Json;
  const annotations = {
    ...(meta.annotations as Record<string, string>),
    ...(fresh ? { [A_CLAIMED_AT]: new Date().toISOString() } : {}),
  };
  const path = claimPath(metaOf(cur).name);
  try {
    const obj = await client.request("PUT", path, { body: { ...cur, metadata: { ...meta, annotations }, spec } });
    return { path, obj, fresh };
  } catch (err) {
    if (isApiError(err, 409) || isApiError(err, 404)) return undefined; // someone else moved first
    throw err;
  }
}

/** Creates the claim Lease of `cidr` for `node`; undefined if it exists already (lost a race). */
async function createClaim(client: KubeClient, node: string, cidr: string, seconds: number): Promise<Held | undefined> {
  const name = claimName(cidr);
  const body = leaseBody(name, CLAIM_NAMESPACE, node, seconds, {
    labels: { [CLAIM_LABEL]: "true" },
    annotations: { [A_CIDR]: cidr, [A_CLAIMED_AT]: new Date().toISOString() },
  });
  try {
    return { path: claimPath(name), obj: await client.request("POST", claimPath(), { body }), fresh: true };
  } catch (err) {
    if (!isApiError(err, 409)) throw err;
    return undefined;
  }
}

/** Claims a node subnet of clusterCIDR for `node`, held for `seconds` (TTL + grace) and renewed by its NodeLease. */
export async function claimSubnetLease(
  client: KubeClient,
  node: string,
  clusterCIDR: string,
  prefix: number,
  seconds: number,
): Promise<{ cidr: string; held: Held }> {
  return claimSubnet<Claim, Held>(node, clusterCIDR, prefix, {
    list: () => listClaims(client),
    // An expired claim does not block: its subnet may be taken over (below).
    blocking: (claims) => {
      const now = Date.now();
      return claims.filter((c) => c.expires > now);
    },
    // A restarted agent gets its own subnet back as long as nobody took it over.
    reuse: (own) => takeOver(client, node, seconds, own.obj, false),
    take: async (cidr, claims) => {
      const expired = claims.find((c) => c.name === claimName(cidr));
      if (expired) return takeOver(client, node, seconds, expired.obj, true);
      return createClaim(client, node, cidr, seconds);
    },
  });
}

/**
 * Claims exactly `cidr` for `node`: the subnet weft gave the Node before (its spec.podCIDRs cannot
 * change). ConflictError when another live node holds it now.
 */
export async function claimExactSubnet(client: KubeClient, node: string, cidr: string, seconds: number): Promise<Held> {
  const name = claimName(cidr);
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const cur = (await listClaims(client)).find((c) => c.name === name);
    let held: Held | undefined;
    if (!cur) held = await createClaim(client, node, cidr, seconds);
    else if (cur.node === node) held = await takeOver(client, node, seconds, cur.obj, false);
    else if (cur.expires <= Date.now()) held = await takeOver(client, node, seconds, cur.obj, true);
    else
      throw new ConflictError(
        "AlreadyExists",
        `Node ${node} has spec.podCIDRs with ${cidr}, which weft gave it before, but node ${cur.node} holds that subnet now (${node}'s claim ran out while it was down): ` +
          `spec.podCIDRs cannot change, so delete the Node (kubectl delete node ${node}; its kubelet registers it again) to get a new subnet, or use podCIDRSource "node"`,
      );
    if (held) return held;
  }
  throw new ConflictError(
    "Contention",
    `node ${node} lost the race for subnet ${cidr} ${MAX_CAS_ATTEMPTS} times in a row; retry`,
  );
}
