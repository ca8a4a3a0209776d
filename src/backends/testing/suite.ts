// The one case suite every backend runs (Hono-style: a function taking the backend factory).
// Each case builds its own namespaces, sets the backend up on every node as the agent would,
// and checks what a user would: pods reach pods, removed peers lose their paths, a re-sync or a
// restarted agent writes nothing, teardown leaves the node as it was.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { run } from "../../kernel/exec.js";
import type { CommandKind } from "../../kernel/tracked.js";
import type { IpFamily as Family } from "../../net/ip.js";
import type { Backend, BackendOptions, PeerNode, SetupResult, SyncReport } from "../types.js";
import { buildTopology, ping, reaches, snapshot, type Topology, type TopoNode } from "./topology.js";

export type BackendFactory = (opts: BackendOptions) => Backend;

export interface SuiteOptions {
  readonly title: string;
  readonly create: BackendFactory;
  /** Expected pod MTU on a 1500-byte underlay. */
  readonly podMtu: number;
  /**
   * Put the last node of every topology behind a router (a second underlay subnet), so that
   * removal and teardown are also checked for cross-subnet paths. Not for host-gw.
   */
  readonly routedUnderlay?: boolean;
  /**
   * Who writes the peer routes: the backend's sync itself (default), or a routing daemon the
   * backend configures (bgp: BIRD), which installs them a moment later. With "daemon" the cases
   * wait for the kernel to show the synced state, and expect no route writes from the sync.
   */
  readonly routesBy?: "backend" | "daemon";
}

/** Counts the kernel commands one node's backend issues. */
export class CommandLog {
  writes: string[][] = [];
  reads = 0;
  readonly hook = (argv: readonly string[], kind: CommandKind): void => {
    if (kind === "write") this.writes.push([...argv]);
    else this.reads++;
  };
  reset(): void {
    this.writes = [];
    this.reads = 0;
  }
}

export interface Member {
  readonly node: TopoNode;
  readonly log: CommandLog;
  backend: Backend;
  setup: SetupResult;
}

export interface Cluster {
  readonly topo: Topology;
  readonly members: Member[];
  /** Every node's lease as the agent would read it from the store. */
  readonly peers: PeerNode[];
  /** Syncs every node with `peers` (the full list, itself included, as the agent passes it). */
  syncAll(peers?: PeerNode[]): Promise<SyncReport[]>;
}

export async function startCluster(topo: Topology, create: BackendFactory): Promise<Cluster> {
  const members: Member[] = [];
  for (const node of topo.nodes) {
    const log = new CommandLog();
    const backend = create({ kernel: { netns: node.netns, onCommand: log.hook } });
    const setup = await backend.setup(node.local);
    members.push({ node, log, backend, setup });
  }
  const peers: PeerNode[] = members.map((m) => ({ ...m.node.local, backendData: m.setup.data }));
  return {
    topo,
    members,
    peers,
    syncAll: async (list = peers) => {
      const out: SyncReport[] = [];
      for (const m of members) out.push(await m.backend.syncPeers(list));
      return out;
    },
  };
}

/** Builds a topology, runs `body`, and always removes the namespaces. */
export async function withTopology<T>(
  spec: Parameters<typeof buildTopology>[0],
  body: (t: Topology) => Promise<T>,
): Promise<T> {
  const topo = await buildTopology(spec);
  try {
    return await body(topo);
  } finally {
    await topo.destroy();
  }
}

export function podAddr(n: TopoNode, f: Family): string {
  const a = f === 4 ? n.pod.ipv4 : n.pod.ipv6;
  assert.ok(a, `${n.name} has no IPv${f} pod`);
  return a;
}

export function assertAllOk(reports: SyncReport[]): void {
  for (const r of reports) {
    assert.deepEqual(r.errors, []);
    for (const p of r.peers) assert.ok(p.ok, `peer ${p.name}: ${p.errors.join("; ")}`);
  }
}

async function jsonIn(netns: string, argv: string[]): Promise<Record<string, unknown>[]> {
  const out = (await run(argv, { netns })).trim();
  return out ? (JSON.parse(out) as Record<string, unknown>[]) : [];
}

/** Everything in a node's kernel that still points at `peer`: routes, permanent neighbours, FDB. */
export async function stateFor(node: TopoNode, peer: TopoNode): Promise<string[]> {
  const cidrs = Object.values(peer.podCIDRs);
  const vteps = cidrs.map((c) => c.split("/")[0]);
  const routes = [
    ...(await jsonIn(node.netns, ["ip", "-j", "-4", "route", "show", "table", "main"])),
    ...(await jsonIn(node.netns, ["ip", "-j", "-6", "route", "show", "table", "main"])),
  ].filter((r) => cidrs.includes(String(r.dst)));
  const neigh = (await jsonIn(node.netns, ["ip", "-j", "neigh", "show", "nud", "permanent"])).filter((n) =>
    vteps.includes(String(n.dst)),
  );
  const fdb = (await jsonIn(node.netns, ["bridge", "-j", "fdb", "show"])).filter(
    (e) => e.dst === peer.underlay.ipv4 || e.dst === peer.underlay.ipv6,
  );
  return [...routes, ...neigh, ...fdb].map((x) => JSON.stringify(x));
}

/** The pod subnets of `peers` a node's main table routes (any protocol). */
async function routedSubnets(node: TopoNode, peers: readonly TopoNode[]): Promise<string[]> {
  const have: string[] = [];
  for (const p of peers)
    for (const cidr of Object.values(p.podCIDRs))
      if (
        cidr &&
        (
          await run(["ip", cidr.includes(":") ? "-6" : "-4", "route", "show", "exact", cidr], { netns: node.netns })
        ).trim()
      )
        have.push(cidr);
  return have;
}

/**
 * With a routing daemon: waits until each node routes exactly the pod subnets of the other nodes
 * in `present` and none of those in `absent` (what the last sync asked for).
 */
export async function settled(
  nodes: readonly TopoNode[],
  present: readonly TopoNode[],
  absent: readonly TopoNode[] = [],
  timeoutMs = 30_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const problems: string[] = [];
    for (const n of nodes) {
      const want = present.filter((p) => p !== n);
      const have = await routedSubnets(n, want);
      const wanted = want.flatMap((p) => Object.values(p.podCIDRs).filter((c): c is string => !!c));
      const missing = wanted.filter((c) => !have.includes(c));
      const stale = await routedSubnets(
        n,
        absent.filter((p) => p !== n),
      );
      if (missing.length || stale.length)
        problems.push(`${n.name}: missing ${missing.join(",")} stale ${stale.join(",")}`);
    }
    if (problems.length === 0) return;
    if (Date.now() > until) assert.fail(`kernel routes not settled after ${timeoutMs} ms: ${problems.join("; ")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const FAMILY_SETS: { label: string; families: Family[] }[] = [
  { label: "IPv4", families: [4] },
  { label: "IPv6", families: [6] },
  { label: "dual-stack", families: [4, 6] },
];

export function backendSuite(o: SuiteOptions): void {
  // n nodes; with routedUnderlay the last one sits on the second subnet.
  const subnets = (n: number): number[] =>
    Array.from({ length: n }, (_, i) => (o.routedUnderlay && i === n - 1 ? 1 : 0));
  const daemon = o.routesBy === "daemon";
  // Waits for a routing daemon to apply what the last sync asked (no-op when the sync wrote it).
  const settle = (nodes: readonly TopoNode[], present: readonly TopoNode[], absent: readonly TopoNode[] = []) =>
    daemon ? settled(nodes, present, absent) : Promise.resolve();
  describe(`backend suite: ${o.title}${o.routedUnderlay ? " (last node behind a router)" : ""}`, () => {
    for (const { label, families } of FAMILY_SETS) {
      test(`${label} pods reach pods on every other node`, () =>
        withTopology({ subnets: subnets(3), podFamilies: families }, async (topo) => {
          const [a, b] = topo.nodes;
          // Without the backend the pods cannot reach each other: the check below can fail.
          for (const f of families)
            assert.equal(await ping(a.pod.netns, podAddr(b, f), 1), false, `IPv${f} reached before sync`);
          const c = await startCluster(topo, o.create);
          for (const m of c.members) assert.equal(m.setup.podMtu, o.podMtu, `${m.node.name} pod MTU`);
          assertAllOk(await c.syncAll());
          await settle(topo.nodes, topo.nodes);
          for (const from of topo.nodes) {
            for (const to of topo.nodes) {
              if (from === to) continue;
              for (const f of families) {
                assert.ok(
                  await reaches(from.pod.netns, podAddr(to, f)),
                  `${from.name} pod -> ${to.name} pod over IPv${f}`,
                );
              }
            }
          }
        }));
    }

    test("a second sync, and a restarted agent, write nothing and leave the kernel state as it was", () =>
      withTopology({ subnets: subnets(3), podFamilies: [4, 6] }, async (topo) => {
        const c = await startCluster(topo, o.create);
        assertAllOk(await c.syncAll());
        await settle(topo.nodes, topo.nodes);
        const before = await Promise.all(topo.nodes.map((n) => snapshot(n.netns)));
        for (const m of c.members) m.log.reset();
        const again = await c.syncAll();
        for (const [i, r] of again.entries()) {
          assert.deepEqual(r.changes, [], `${topo.nodes[i].name} re-sync changes`);
          assert.deepEqual(c.members[i].log.writes, [], `${topo.nodes[i].name} re-sync kernel writes`);
        }
        // A restarted agent: a fresh backend object for the same node and the same leases.
        for (const m of c.members) {
          m.log.reset();
          m.backend = o.create({ kernel: { netns: m.node.netns, onCommand: m.log.hook } });
          const s = await m.backend.setup(m.node.local);
          assert.deepEqual(s.data, m.setup.data, "published backend data is stable across restarts");
          const r = await m.backend.syncPeers(c.peers);
          assert.deepEqual([...s.changes, ...r.changes], [], `${m.node.name} restart changes`);
          assert.deepEqual(m.log.writes, [], `${m.node.name} restart kernel writes`);
        }
        const after = await Promise.all(topo.nodes.map((n) => snapshot(n.netns)));
        assert.deepEqual(after, before);
        assert.ok(await reaches(topo.nodes[0].pod.netns, podAddr(topo.nodes[1], 4)));
      }));

    test("a sync repairs drift: a route deleted by hand comes back, nothing else is rewritten", () =>
      withTopology({ subnets: subnets(2), podFamilies: [4, 6] }, async (topo) => {
        const [a, b] = topo.nodes;
        const c = await startCluster(topo, o.create);
        assertAllOk(await c.syncAll());
        await settle(topo.nodes, topo.nodes);
        const before = await snapshot(a.netns);
        await run(["ip", "route", "del", b.podCIDRs.ipv4 as string], { netns: a.netns });
        assert.equal(await ping(a.pod.netns, podAddr(b, 4), 1), false, "route removal did not cut traffic");
        c.members[0].log.reset();
        const r = await c.members[0].backend.syncPeers(c.peers);
        if (daemon) {
          // The daemon repairs its own routes (BIRD's kernel scan); the sync has nothing to write.
          assert.deepEqual(r.changes, []);
          assert.equal(c.members[0].log.writes.length, 0);
          await settle([a], topo.nodes);
        } else {
          assert.deepEqual(
            r.changes.map((ch) => [ch.action, ch.object, ch.peer]),
            [["add", "route", b.name]],
          );
          assert.equal(c.members[0].log.writes.length, 1);
        }
        assert.equal(await snapshot(a.netns), before);
        assert.ok(await reaches(a.pod.netns, podAddr(b, 4)));
      }));

    test("a peer removed from the list loses its routes, neighbours and FDB entries, and traffic to it stops", () =>
      withTopology({ subnets: subnets(3), podFamilies: [4, 6] }, async (topo) => {
        const [a, b, gone] = topo.nodes;
        const c = await startCluster(topo, o.create);
        assertAllOk(await c.syncAll());
        await settle(topo.nodes, topo.nodes);
        assert.ok((await stateFor(a, gone)).length > 0, "node0 has state for node2 before removal");
        assert.ok(await reaches(a.pod.netns, podAddr(gone, 4)));
        const r = await c.members[0].backend.syncPeers(c.peers.filter((p) => p.name !== gone.name));
        // A daemon-routed backend reports its reload instead; the daemon removes the routes.
        const removal = (ch: { action: string; object: string }) =>
          ch.action === "delete" || (daemon && ch.object === "daemon");
        assert.ok(r.changes.length > 0 && r.changes.every(removal), JSON.stringify(r.changes));
        await settle([a], [a, b], [gone]);
        assert.deepEqual(r.peers.map((p) => p.name).sort(), [b.name]);
        assert.deepEqual(await stateFor(a, gone), [], "node0 still has state for node2");
        assert.ok((await stateFor(a, b)).length > 0, "node1's state must stay");
        for (const f of [4, 6] as const) {
          assert.equal(await ping(a.pod.netns, podAddr(gone, f), 1), false, `IPv${f} to the removed peer still works`);
          assert.ok(await reaches(a.pod.netns, podAddr(b, f)), `IPv${f} to the remaining peer`);
        }
      }));

    test("teardown leaves each node as it was before setup", () =>
      withTopology({ subnets: subnets(2), podFamilies: [4, 6] }, async (topo) => {
        const before = await Promise.all(topo.nodes.map((n) => snapshot(n.netns)));
        const c = await startCluster(topo, o.create);
        assertAllOk(await c.syncAll());
        await settle(topo.nodes, topo.nodes);
        assert.ok(await reaches(topo.nodes[0].pod.netns, podAddr(topo.nodes[1], 6)));
        // Node 0 by the backend object that set it up; node 1 by a fresh one, as an agent that
        // restarted (or is switching backends) would: teardown needs no memory of setup.
        await c.members[0].backend.teardown();
        await o.create({ kernel: { netns: c.members[1].node.netns } }).teardown();
        const after = await Promise.all(topo.nodes.map((n) => snapshot(n.netns)));
        assert.deepEqual(after, before);
        assert.equal(await ping(topo.nodes[0].pod.netns, podAddr(topo.nodes[1], 4), 1), false);
      }));

    test("a bad peer is reported with a reason and does not stop the others", () =>
      withTopology({ subnets: subnets(2), podFamilies: [4] }, async (topo) => {
        const [a, b] = topo.nodes;
        const c = await startCluster(topo, o.create);
        const bad: PeerNode[] = [
          {
            name: "overlapping",
            underlay: { ipv4: "10.200.0.9" },
            podCIDRs: { ipv4: "10.244.1.128/25" },
            backendData: c.peers[1].backendData,
          },
          { name: "garbled", underlay: { ipv4: "10.200.0.8" }, podCIDRs: { ipv4: "10.244.300.0/24" }, backendData: {} },
          {
            name: "on-underlay",
            underlay: { ipv4: "10.200.0.7" },
            podCIDRs: { ipv4: "10.200.0.0/25" },
            backendData: c.peers[1].backendData,
          },
        ];
        const r = await c.members[0].backend.syncPeers([...c.peers, ...bad]);
        const byName = new Map(r.peers.map((p) => [p.name, p]));
        assert.equal(byName.get(b.name)?.ok, true, JSON.stringify(byName.get(b.name)));
        assert.equal(byName.get("overlapping")?.ok, false);
        assert.match(
          byName.get("overlapping")?.errors.join() ?? "",
          /overlaps this node's pod subnet 10\.244\.1\.0\/24/,
        );
        assert.equal(byName.get("garbled")?.ok, false);
        assert.match(byName.get("garbled")?.errors.join() ?? "", /not in CIDR notation/);
        assert.match(
          byName.get("on-underlay")?.errors.join() ?? "",
          /overlaps this node's underlay subnet 10\.200\.0\.0\/24/,
        );
        // The underlay itself still works: node1's underlay address answers from node0.
        await run(["busybox", "ping", "-c", "1", "-W", "2", b.underlay.ipv4], { netns: a.netns });
        await c.members[1].backend.syncPeers(c.peers);
        await settle([a], topo.nodes);
        assert.ok(await reaches(a.pod.netns, podAddr(b, 4)));
      }));
  });
}
