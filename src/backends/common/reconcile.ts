// Makes the kernel match the desired per-peer state, writing only what differs. Reads the
// backend's routes (by route protocol) and, when there is a VTEP, its permanent neighbour and
// FDB entries; removes what no peer wants; a failed write is charged to its peer only.
import { delFdb, listFdb, replaceFdb, type FdbEntry } from "../../kernel/fdb.js";
import { delNeigh, listPermanentNeigh, replaceNeigh, type NeighEntry } from "../../kernel/neigh.js";
import { delRoute, listRoutes, replaceRoute, type PeerRoute } from "../../kernel/peer-route.js";
import type { KernelContext } from "../../kernel/tracked.js";
import type { Change, PeerStatus, SyncReport } from "../types.js";
import { canonicalAddr, canonicalCidr } from "./ipnet.js";
import type { PeerPlan } from "./plan.js";

export interface ReconcileInput {
  readonly ctx: KernelContext;
  readonly routeProtocol: number;
  /** The VTEP whose neighbour and FDB entries are managed; null for backends without one. */
  readonly vtep: string | null;
  readonly plans: readonly PeerPlan[];
  /** Peers refused before planning; reported as they are. */
  readonly rejected: readonly PeerStatus[];
}

const routeText = (r: PeerRoute): string => `${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? " onlink" : ""}`;
const sameRoute = (a: PeerRoute, b: PeerRoute): boolean =>
  canonicalAddr(a.via || "0.0.0.0") === canonicalAddr(b.via || "0.0.0.0") && a.dev === b.dev && a.onlink === b.onlink;
const msg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export async function reconcile(input: ReconcileInput): Promise<SyncReport> {
  const { ctx, routeProtocol: proto, vtep } = input;
  const changes: Change[] = [];
  const errors: string[] = [];
  const peerErrors = new Map<string, string[]>(input.plans.map((p) => [p.peer, [...p.errors]]));
  // Peers whose kernel writes failed: their paths are not reported as wired.
  const broken = new Set<string>();
  const fail = (peer: string, m: string): void => void peerErrors.get(peer)?.push(m);

  // Desired state keyed as the kernel will print it, with the owning peer.
  const wantRoutes = new Map<string, { r: PeerRoute; peer: string }>();
  const wantNeigh = new Map<string, { n: NeighEntry; peer: string }>();
  const wantFdb = new Map<string, { e: FdbEntry; peer: string }>();
  const blocked = new Set<string>();
  for (const p of input.plans) {
    for (const e of p.fdb) {
      const mac = e.mac.toLowerCase();
      const owner = wantFdb.get(mac);
      if (owner && owner.peer !== p.peer) {
        fail(p.peer, `peer ${p.peer}: VTEP MAC ${mac} is also used by peer ${owner.peer}; not wired over VXLAN`);
        blocked.add(p.peer);
      } else wantFdb.set(mac, { e: { mac, dst: canonicalAddr(e.dst) }, peer: p.peer });
    }
    if (blocked.has(p.peer)) continue;
    for (const n of p.neighs) wantNeigh.set(canonicalAddr(n.ip), { n: { ip: canonicalAddr(n.ip), mac: n.mac.toLowerCase() }, peer: p.peer });
    for (const r of p.routes) wantRoutes.set(canonicalCidr(r.dst), { r: { ...r, dst: canonicalCidr(r.dst) }, peer: p.peer });
  }

  const haveRoutes = new Map((await listRoutes(ctx, proto)).map((r) => [canonicalCidr(r.dst), r]));
  const haveNeigh = new Map(vtep ? (await listPermanentNeigh(ctx, vtep)).map((n) => [canonicalAddr(n.ip), n]) : []);
  const haveFdb = new Map<string, FdbEntry[]>();
  if (vtep) for (const e of await listFdb(ctx, vtep)) haveFdb.set(e.mac, [...(haveFdb.get(e.mac) ?? []), e]);

  const attempt = async (peer: string | undefined, change: Change, op: () => Promise<void>): Promise<boolean> => {
    try {
      await op();
      changes.push(change);
      return true;
    } catch (e) {
      const m = `${change.action} ${change.object} ${change.detail} failed: ${msg(e)}`;
      if (peer) {
        fail(peer, `peer ${peer}: ${m}`);
        broken.add(peer);
      }
      else errors.push(m);
      return false;
    }
  };

  // 1. Routes nobody wants go first, so traffic never follows a half-removed path.
  for (const [dst, r] of haveRoutes) {
    if (!wantRoutes.has(dst)) await attempt(undefined, { action: "delete", object: "route", detail: routeText(r) }, () => delRoute(ctx, dst, proto));
  }

  // 2. Per peer, in dependency order: FDB, neighbours, routes. A failure skips the peer's rest.
  for (const p of input.plans) {
    if (blocked.has(p.peer)) continue;
    let ok = true;
    if (vtep) {
      for (const [mac, { e, peer }] of wantFdb) {
        if (peer !== p.peer || !ok) continue;
        const have = haveFdb.get(mac) ?? [];
        if (have.length === 1 && canonicalAddr(have[0].dst) === e.dst) continue;
        // Extra remotes for the MAC (appended by someone) would flood copies: drop them first.
        for (const h of have.filter((h) => canonicalAddr(h.dst) !== e.dst)) {
          ok = ok && (await attempt(peer, { action: "delete", object: "fdb", detail: `${h.mac} dst ${h.dst}`, peer }, () => delFdb(ctx, vtep, h)));
        }
        if (ok) ok = await attempt(peer, { action: have.length ? "replace" : "add", object: "fdb", detail: `${mac} dst ${e.dst}`, peer }, () => replaceFdb(ctx, vtep, e));
      }
      for (const [ip, { n, peer }] of wantNeigh) {
        if (peer !== p.peer || !ok) continue;
        const have = haveNeigh.get(ip);
        if (have && have.mac === n.mac) continue;
        ok = await attempt(peer, { action: have ? "replace" : "add", object: "neigh", detail: `${ip} lladdr ${n.mac}`, peer }, () => replaceNeigh(ctx, vtep, n));
      }
    }
    for (const [dst, { r, peer }] of wantRoutes) {
      if (peer !== p.peer || !ok) continue;
      const have = haveRoutes.get(dst);
      if (have && sameRoute(have, r)) continue;
      ok = await attempt(peer, { action: have ? "replace" : "add", object: "route", detail: routeText(r), peer }, () => replaceRoute(ctx, r, proto));
    }
  }

  // 3. Then the neighbour and FDB entries of peers that are gone.
  if (vtep) {
    for (const [ip] of haveNeigh) {
      if (!wantNeigh.has(ip)) await attempt(undefined, { action: "delete", object: "neigh", detail: ip }, () => delNeigh(ctx, vtep, ip));
    }
    for (const [mac, entries] of haveFdb) {
      if (wantFdb.has(mac)) continue;
      for (const e of entries) await attempt(undefined, { action: "delete", object: "fdb", detail: `${mac} dst ${e.dst}` }, () => delFdb(ctx, vtep, e));
    }
  }

  const peers: PeerStatus[] = [
    ...input.plans.map((p) => {
      const errs = peerErrors.get(p.peer) ?? [];
      const paths = blocked.has(p.peer) || broken.has(p.peer) ? {} : p.paths;
      return { name: p.peer, ok: errs.length === 0, paths, errors: errs };
    }),
    ...input.rejected,
  ];
  return { peers, changes, errors };
}
