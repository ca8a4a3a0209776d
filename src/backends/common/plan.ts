// Desired kernel state per peer, as plain data: what a backend wants, before the reconciler
// compares it with what the kernel has.
import type { FdbEntry } from "../../kernel/fdb.js";
import type { NeighEntry } from "../../kernel/neigh.js";
import type { PeerRoute } from "../../kernel/peer-route.js";
import type { PathKind } from "../types.js";

export interface PeerPlan {
  readonly peer: string;
  readonly routes: PeerRoute[];
  readonly neighs: NeighEntry[];
  readonly fdb: FdbEntry[];
  readonly paths: Record<string, PathKind>;
  readonly errors: string[];
}

export function emptyPlan(peer: string): PeerPlan {
  return { peer, routes: [], neighs: [], fdb: [], paths: {}, errors: [] };
}
