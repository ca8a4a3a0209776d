// The BGP objects on a lab cluster (3 node namespaces, real agents, BIRD per node, the lab etcd):
// the node-to-node mesh turned off and on by a BGPConfiguration withdraws and restores every
// learnt route; a BGPPeer with routeReflectorClient makes n1 reflect, so with the mesh off n2
// learns n3's pod subnet through n1 alone. Ground truth from the kernel (`ip route`) and BIRD.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { run } from "../../kernel/exec.js";
import { netnsPathOf } from "../../kernel/netns.js";
import type { NodeInfo, ObjectInput } from "../../store/types.js";
import { skipReason, TestLab } from "../../testlib/lab.js";
import { decodeAgentReport } from "../../agent/published.js";

/** This helper's own lab names (bo-...), so no other lab is ever touched. */
class BoLab extends TestLab {
  override readonly id = `bo-lab-${Math.random().toString(36).slice(2, 7)}`;
  override readonly dir = `/run/${this.id}`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) assert.fail(`${what}: not within ${timeoutMs} ms${last ? ` (${String(last)})` : ""}`);
    await sleep(200);
  }
}

const skip = skipReason() ?? (process.env.WEFT_BIRD_MISSING ? "bird2 missing" : undefined);

describe(
  "bgp lab: BGP objects turn the mesh off and on, and make a route reflector",
  { skip, timeout: 300_000 },
  () => {
    const lab = new BoLab();
    let nodes: NodeInfo[] = [];

    /** Node name -> its pod subnet (IPv4) and underlay address. */
    const info = (name: string) => {
      const n = nodes.find((x) => x.name === name);
      assert.ok(n, `node ${name}`);
      return { cidr: n.podCIDRs[0], addr: n.addresses[0] };
    };
    const netns = (name: string) => netnsPathOf(lab.state()!.nodes.find((n) => n.name === name)!.netns);
    const birdSocket = (name: string) =>
      join(lab.state()!.nodes.find((n) => n.name === name)!.dir, "state", "bird", "bird.ctl");

    /** dst -> gateway of the routes BIRD put in a node's kernel. */
    async function birdRoutes(name: string): Promise<Map<string, string>> {
      const rs = JSON.parse(
        (await run(["ip", "-j", "-4", "route", "show", "proto", "bird"], { netns: netns(name) })) || "[]",
      ) as {
        dst: string;
        gateway?: string;
      }[];
      return new Map(rs.map((r) => [r.dst, r.gateway ?? ""]));
    }

    const apply = (o: ObjectInput) => lab.objects().apply(o);
    const config = (spec: Record<string, unknown>): ObjectInput => ({
      apiVersion: "weft.dev/v1",
      kind: "BGPConfiguration",
      metadata: { name: "default" },
      spec,
    });

    /** Every node has (want=true) or lacks (want=false) every other node's subnet, proto bird, via that node. */
    async function meshRoutes(want: boolean): Promise<void> {
      await waitFor(`every node ${want ? "has" : "has lost"} the others' pod subnets`, async () => {
        for (const a of ["n1", "n2", "n3"]) {
          const have = await birdRoutes(a);
          for (const b of ["n1", "n2", "n3"]) {
            if (a === b) continue;
            const { cidr, addr } = info(b);
            if (want ? have.get(cidr) !== addr : have.has(cidr)) return undefined;
          }
        }
        return true;
      });
    }

    before(async () => {
      const r = await lab.cli(["up", "--nodes", "3", "--backend", "bgp"]);
      assert.equal(r.code, 0, `lab up failed: ${r.stderr}`);
      nodes = await waitFor("3 nodes registered", async () => {
        const ns = await lab.clusterStore().listNodes();
        return ns.length === 3 ? ns : undefined;
      });
    });
    after(async () => {
      await lab.destroy();
    });

    test("the mesh (default): every node learns every other node's pod subnet from BIRD; bird.conf is 0600", async () => {
      await meshRoutes(true);
      // It may hold BGP passwords: root only, in a root-only directory.
      for (const n of ["n1", "n2", "n3"]) {
        const conf = join(dirname(birdSocket(n)), "bird.conf");
        assert.equal(statSync(conf).mode & 0o777, 0o600, conf);
        assert.equal(statSync(dirname(conf)).mode & 0o777, 0o700, dirname(conf));
      }
    });

    test("BGPConfiguration nodeToNodeMesh: false withdraws every learnt route; true restores them; sessions in the agents' reports", async () => {
      await apply(config({ nodeToNodeMesh: false }));
      await meshRoutes(false);
      await apply(config({ nodeToNodeMesh: true }));
      await meshRoutes(true);
      // What `weft status` shows: each node's sessions Established, one route in and one out each.
      await waitFor("Established sessions with prefix counts in every report", async () => {
        const ns = await lab.clusterStore().listNodes();
        for (const n of ns) {
          const s = decodeAgentReport(n.backendData)?.sessions ?? [];
          if (s.length !== 2 || !s.every((x) => x.state === "Established" && x.imported === 1 && x.exported === 1))
            return undefined;
        }
        return true;
      });
    });

    test("a route reflector: mesh off, n1 reflects to n2 and n3 (rr clients); n2 learns n3's subnet through n1", async () => {
      await apply(config({ nodeToNodeMesh: false, nodes: [{ node: "n1", routeReflectorClusterId: "10.255.0.1" }] }));
      await apply({
        apiVersion: "weft.dev/v1",
        kind: "BGPPeer",
        metadata: { name: "bo-rr" },
        spec: { node: "n1", peerSelector: "kubernetes.io/hostname in (n2,n3)", routeReflectorClient: true },
      });
      // Reflected routes keep the announcing node's next hop (the nodes share one L2).
      await meshRoutes(true);
      for (const [client, other] of [
        ["n2", "n3"],
        ["n3", "n2"],
      ]) {
        const out = await run(["birdc", "-s", birdSocket(client), "show", "route", "all", "for", info(other).cidr]);
        // Learnt over the one session this client has (to n1), with the reflector's cluster id on it.
        assert.match(out, new RegExp(`node_${info("n1").addr.replace(/\./g, "_")}`), out);
        assert.match(out, /BGP\.cluster_list: 10\.255\.0\.1/, out);
        const protos = await run(["birdc", "-s", birdSocket(client), "show", "protocols"]);
        assert.doesNotMatch(protos, /mesh_/, `${client} has no mesh session: ${protos}`);
      }
      await lab.objects().delete({ kind: "BGPPeer", name: "bo-rr" });
      await meshRoutes(false);
      await lab.objects().delete({ kind: "BGPConfiguration", name: "default" });
      await meshRoutes(true);
    });
  },
);
