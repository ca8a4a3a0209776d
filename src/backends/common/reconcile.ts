// Makes the kernel match the desired per-peer state, writing only what differs. Reads the
// backend's routes (by route protocol) and, when there is a VTEP, its permanent neighbour and
// FDB entries; removes what no peer wants; a failed write is charged to its peer only.
// With a KernelMemo, a sync that wrote everything it meant to remembers the result, and the next
// sync may diff against that instead of listing the kernel again (four `ip`/`bridge` processes
// fewer: with N nodes, one node joining costs N agents a sync at the same moment).
import { listFdb, type FdbEntry } from "../../kernel/fdb.js";
import { listPermanentNeigh, type NeighEntry } from "../../kernel/neigh.js";
import { listRoutes, type PeerRoute } from "../../kernel/peer-route.js";
import { applyPeerWrites, type PeerWrite } from "../../kernel/peer-writes.js";
import type { KernelContext } from "../../kernel/tracked.js";
import type { Change, PeerStatus, SyncReport } from "../types.js";
import { canonicalCidr, KERNEL_PREFIX } from "../../net/cidr.js";
import { canonicalIpOrThrow } from "../../net/ip.js";

/** A route dst as the prefix it means, whether iproute2 printed it bare or with a length. */
const routeKey = (dst: string): string => canonicalCidr(dst, KERNEL_PREFIX);
import type { PeerPlan } from "./plan.js";

export interface ReconcileInput {
  readonly ctx: KernelContext;
  readonly routeProtocol: number;
  /** The VTEP whose neighbour and FDB entries are managed; null for backends without one. */
  readonly vtep: string | null;
  readonly plans: readonly PeerPlan[];
  /** Peers refused before planning; reported as they are. */
  readonly rejected: readonly PeerStatus[];
  /** What the last complete sync left in the kernel; updated (or cleared) by this one. */
  readonly memo?: KernelMemo;
  /** Diff against memo.view when it is set instead of listing the kernel (drift goes unseen). */
  readonly trustMemo?: boolean;
}

/** The backend's kernel state as listed (keys canonical). */
export interface KernelView {
  readonly routes: ReadonlyMap<string, PeerRoute>;
  readonly neigh: ReadonlyMap<string, NeighEntry>;
  readonly fdb: ReadonlyMap<string, readonly FdbEntry[]>;
}

/** Holder a backend keeps across syncs. */
export interface KernelMemo {
  view?: KernelView;
}

async function listView(ctx: KernelContext, proto: number, vtep: string | null): Promise<KernelView> {
  const routes = new Map((await listRoutes(ctx, proto)).map((r) => [routeKey(r.dst), r]));
  const neigh = new Map(vtep ? (await listPermanentNeigh(ctx, vtep)).map((n) => [canonicalIpOrThrow(n.ip), n]) : []);
  const fdb = new Map<string, FdbEntry[]>();
  if (vtep) for (const e of await listFdb(ctx, vtep)) fdb.set(e.mac, [...(fdb.get(e.mac) ?? []), e]);
  return { routes, neigh, fdb };
}

const routeText = (r: PeerRoute): string => `${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? " onlink" : ""}`;
const sameRoute = (a: PeerRoute, b: PeerRoute): boolean =>
  canonicalIpOrThrow(a.via || "0.0.0.0") === canonicalIpOrThrow(b.via || "0.0.0.0") &&
  a.dev === b.dev &&
  a.onlink === b.onlink;

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
      } else wantFdb.set(mac, { e: { mac, dst: canonicalIpOrThrow(e.dst) }, peer: p.peer });
    }
    if (blocked.has(p.peer)) continue;
    for (const n of p.neighs)
      wantNeigh.set(canonicalIpOrThrow(n.ip), {
        n: { ip: canonicalIpOrThrow(n.ip), mac: n.mac.toLowerCase() },
        peer: p.peer,
      });
    for (const r of p.routes) wantRoutes.set(routeKey(r.dst), { r: { ...r, dst: routeKey(r.dst) }, peer: p.peer });
  }

  const memo = input.memo;
  const have = input.trustMemo && memo?.view ? memo.view : await listView(ctx, proto, vtep);
  if (memo) memo.view = undefined;
  const { routes: haveRoutes, neigh: haveNeigh, fdb: haveFdb } = have;

  // Writes go in phases, each phase one netlink datagram (kernel/peer-writes.ts); a failed write
  // is charged to its peer, whose later phases are then skipped.
  interface Op {
    readonly peer?: string;
    readonly change: Change;
    readonly write: PeerWrite;
  }
  const apply = async (ops: Op[]): Promise<void> => {
    const failed = await applyPeerWrites(
      ctx,
      ops.map((o) => o.write),
    );
    for (const [i, op] of ops.entries()) {
      const err = failed.get(i);
      if (err === undefined) {
        changes.push(op.change);
        continue;
      }
      const m = `${op.change.action} ${op.change.object} ${op.change.detail} failed: ${err}`;
      if (op.peer) {
        fail(op.peer, `peer ${op.peer}: ${m}`);
        broken.add(op.peer);
      } else errors.push(m);
    }
  };
  const live = (peer: string): boolean => !blocked.has(peer) && !broken.has(peer);

  // 1. Routes nobody wants go first, so traffic never follows a half-removed path.
  await apply(
    [...haveRoutes]
      .filter(([dst]) => !wantRoutes.has(dst))
      .map(([dst, r]) => ({
        change: { action: "delete", object: "route", detail: routeText(r) },
        write: { kind: "route-del", dst, protocol: proto },
      })),
  );

  // 2-4. Per peer, in dependency order: FDB, neighbours, routes.
  if (vtep) {
    const fdbOps: Op[] = [];
    for (const [mac, { e, peer }] of wantFdb) {
      if (!live(peer)) continue;
      const have = haveFdb.get(mac) ?? [];
      if (have.length === 1 && canonicalIpOrThrow(have[0].dst) === e.dst) continue;
      // Extra remotes for the MAC (appended by someone) would flood copies: drop them first.
      for (const h of have.filter((h) => canonicalIpOrThrow(h.dst) !== e.dst)) {
        fdbOps.push({
          peer,
          change: { action: "delete", object: "fdb", detail: `${h.mac} dst ${h.dst}`, peer },
          write: { kind: "fdb-del", dev: vtep, entry: h },
        });
      }
      fdbOps.push({
        peer,
        change: { action: have.length ? "replace" : "add", object: "fdb", detail: `${mac} dst ${e.dst}`, peer },
        write: { kind: "fdb-replace", dev: vtep, entry: e },
      });
    }
    await apply(fdbOps);
    const neighOps: Op[] = [];
    for (const [ip, { n, peer }] of wantNeigh) {
      if (!live(peer)) continue;
      const have = haveNeigh.get(ip);
      if (have && have.mac === n.mac) continue;
      neighOps.push({
        peer,
        change: { action: have ? "replace" : "add", object: "neigh", detail: `${ip} lladdr ${n.mac}`, peer },
        write: { kind: "neigh-replace", dev: vtep, entry: n },
      });
    }
    await apply(neighOps);
  }
  const routeOps: Op[] = [];
  for (const [dst, { r, peer }] of wantRoutes) {
    if (!live(peer)) continue;
    const have = haveRoutes.get(dst);
    if (have && sameRoute(have, r)) continue;
    routeOps.push({
      peer,
      change: { action: have ? "replace" : "add", object: "route", detail: routeText(r), peer },
      write: { kind: "route-replace", route: r, protocol: proto },
    });
  }
  await apply(routeOps);

  // 5. Then the neighbour and FDB entries of peers that are gone.
  if (vtep) {
    await apply(
      [...haveNeigh.keys()]
        .filter((ip) => !wantNeigh.has(ip))
        .map((ip) => ({
          change: { action: "delete", object: "neigh", detail: ip },
          write: { kind: "neigh-del", dev: vtep, ip },
        })),
    );
    await apply(
      [...haveFdb]
        .filter(([mac]) => !wantFdb.has(mac))
        .flatMap(([mac, entries]) =>
          entries.map((e) => ({
            change: { action: "delete", object: "fdb", detail: `${mac} dst ${e.dst}` } as Change,
            write: { kind: "fdb-del", dev: vtep, entry: e } as PeerWrite,
          })),
        ),
    );
  }

  // Everything written: the kernel now holds exactly what was wanted.
  if (memo && errors.length === 0 && blocked.size === 0 && broken.size === 0) {
    memo.view = {
      routes: new Map([...wantRoutes].map(([dst, { r }]) => [dst, r])),
      neigh: new Map([...wantNeigh].map(([ip, { n }]) => [ip, n])),
      fdb: new Map([...wantFdb].map(([mac, { e }]) => [mac, [e]])),
    };
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
