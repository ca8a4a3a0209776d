// Subnet claims as coordination.k8s.io Leases in weft-system (one per node subnet, named after it):
// created only if absent, renewed by resourceVersion, taken over once expired.
import { claimSubnet } from "../registration.js";
import type { SubnetClaim } from "../types.js";
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
import { retireDeadNode } from "./nodes.js";

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

/** Claims a node subnet of clusterCIDR for `node`, held for `seconds` (TTL + grace) and renewed by its NodeLease. */
export async function claimSubnetLease(
  client: KubeClient,
  node: string,
  clusterCIDR: string,
  prefix: number,
  seconds: number,
): Promise<{ cidr: string; held: Held }> {
  const takeOver = async (cur: Json, fresh: boolean): Promise<Held | undefined> => {
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
      return { path, obj };
    } catch (err) {
      if (isApiError(err, 409) || isApiError(err, 404)) return undefined; // someone else moved first
      throw err;
    }
  };
  return claimSubnet<Claim, Held>(node, clusterCIDR, prefix, {
    list: () => listClaims(client),
    // An expired claim does not block: its subnet may be taken over (below).
    blocking: (claims) => {
      const now = Date.now();
      return claims.filter((c) => c.expires > now);
    },
    // A restarted agent gets its own subnet back as long as nobody took it over.
    reuse: (own) => takeOver(own.obj, false),
    take: async (cidr, claims) => {
      const name = claimName(cidr);
      const expired = claims.find((c) => c.name === name);
      if (expired) {
        const h = await takeOver(expired.obj, true);
        if (h) await retireDeadNode(client, expired.node, cidr);
        return h;
      }
      const body = leaseBody(name, CLAIM_NAMESPACE, node, seconds, {
        labels: { [CLAIM_LABEL]: "true" },
        annotations: { [A_CIDR]: cidr, [A_CLAIMED_AT]: new Date().toISOString() },
      });
      try {
        return { path: claimPath(name), obj: await client.request("POST", claimPath(), { body }) };
      } catch (err) {
        if (!isApiError(err, 409)) throw err;
        return undefined;
      }
    },
  });
}
