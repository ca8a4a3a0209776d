// Makes the kernel match the desired per-peer state, writing only what differs. Reads the
// backend's routes (by route protocol) and, when there is a VTEP, its permanent neighbour and
// FDB entries; removes what no peer wants; a failed write is charged to its peer only.
import { delFdbArgv, listFdb, replaceFdbArgv, type FdbEntry } from "../../kernel/fdb.js";
import { delNeighArgv, listPermanentNeigh, replaceNeighArgv, type NeighEntry } from "../../kernel/neigh.js";
import { delRouteArgv, listRoutes, replaceRouteArgv, type PeerRoute } from "../../kernel/peer-route.js";
import { writeBatch, type KernelContext } from "../../kernel/tracked.js";
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

  // Writes go in phases, each phase one `ip -batch`/`bridge -batch` process; a failed command is
  // charged to its peer, whose later phases are then skipped.
  interface Op { readonly peer?: string; readonly change: Change; readonly argv: string[] }
  const apply = async (tool: "ip" | "bridge", ops: Op[]): Promise<void> => {
    const failed = await writeBatch(ctx, tool, ops.map((o) => o.argv));
    for (const [i, op] of ops.entries()) {
      const err = failed.get(i);
      if (err === undefined) { changes.push(op.change); continue; }
      const m = `${op.change.action} ${op.change.object} ${op.change.detail} failed: ${err}`;
      if (op.peer) {
        fail(op.peer, `peer ${op.peer}: ${m}`);
        broken.add(op.peer);
      } else errors.push(m);
    }
  };
  const live = (peer: string): boolean => !blocked.has(peer) && !broken.has(peer);

  // 1. Routes nobody wants go first, so traffic never follows a half-removed path.
  await apply("ip", [...haveRoutes].filter(([dst]) => !wantRoutes.has(dst))
    .map(([dst, r]) => ({ change: { action: "delete", object: "route", detail: routeText(r) }, argv: delRouteArgv(dst, proto) })));

  // 2-4. Per peer, in dependency order: FDB, neighbours, routes.
  if (vtep) {
    const fdbOps: Op[] = [];
    for (const [mac, { e, peer }] of wantFdb) {
      if (!live(peer)) continue;
      const have = haveFdb.get(mac) ?? [];
      if (have.length === 1 && canonicalAddr(have[0].dst) === e.dst) continue;
      // Extra remotes for the MAC (appended by someone) would flood copies: drop them first.
      for (const h of have.filter((h) => canonicalAddr(h.dst) !== e.dst)) {
        fdbOps.push({ peer, change: { action: "delete", object: "fdb", detail: `${h.mac} dst ${h.dst}`, peer }, argv: delFdbArgv(vtep, h) });
      }
      fdbOps.push({ peer, change: { action: have.length ? "replace" : "add", object: "fdb", detail: `${mac} dst ${e.dst}`, peer }, argv: replaceFdbArgv(vtep, e) });
    }
    await apply("bridge", fdbOps);
    const neighOps: Op[] = [];
    for (const [ip, { n, peer }] of wantNeigh) {
      if (!live(peer)) continue;
      const have = haveNeigh.get(ip);
      if (have && have.mac === n.mac) continue;
      neighOps.push({ peer, change: { action: have ? "replace" : "add", object: "neigh", detail: `${ip} lladdr ${n.mac}`, peer }, argv: replaceNeighArgv(vtep, n) });
    }
    await apply("ip", neighOps);
  }
  const routeOps: Op[] = [];
  for (const [dst, { r, peer }] of wantRoutes) {
    if (!live(peer)) continue;
    const have = haveRoutes.get(dst);
    if (have && sameRoute(have, r)) continue;
    routeOps.push({ peer, change: { action: have ? "replace" : "add", object: "route", detail: routeText(r), peer }, argv: replaceRouteArgv(r, proto) });
  }
  await apply("ip", routeOps);

  // 5. Then the neighbour and FDB entries of peers that are gone.
  if (vtep) {
    await apply("ip", [...haveNeigh.keys()].filter((ip) => !wantNeigh.has(ip))
      .map((ip) => ({ change: { action: "delete", object: "neigh", detail: ip }, argv: delNeighArgv(vtep, ip) })));
    await apply("bridge", [...haveFdb].filter(([mac]) => !wantFdb.has(mac)).flatMap(([mac, entries]) =>
      entries.map((e) => ({ change: { action: "delete", object: "fdb", detail: `${mac} dst ${e.dst}` } as Change, argv: delFdbArgv(vtep, e) }))));
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
