// The ToRs as route reflectors (`weft lab up --backend bgp --racks 2 --tor-mode rr --dual-stack`):
// every ToR is in the cluster AS (64512), its rack's nodes are its iBGP rr clients (one BGPPeer per
// rack and family, mesh off). What an operator checks, both families:
//   - each ToR lists its rack's pod CIDRs with the owning node as next hop;
//   - each node's kernel holds its rack neighbours' CIDRs via those nodes (reflected: next hop
//     kept) and the other rack's CIDRs through its ToR, all learnt by BIRD (proto bird);
//   - the external namespace reaches every pod, and every pod reaches every pod.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { skipReason, sleep, TorLab, unconnected } from "./fixture.js";

const skip = skipReason();
const UP = ["--nodes", "4", "--backend", "bgp", "--racks", "2", "--tor-mode", "rr", "--dual-stack"];
const RACK: Record<string, number> = { n1: 1, n2: 1, n3: 2, n4: 2 };
const RACK_NODES: Record<number, string> = { 1: "n1,n2", 2: "n3,n4" };
const PODS = Object.keys(RACK).map((n, i) => ({ name: "abcd"[i], node: n }));
const KEYS = PODS.map((p) => `default/${p.name}`).sort();
const TOR = (r: number, f: 4 | 6) => (f === 4 ? `10.250.${r}.1` : `fd00:250:${r}::1`);

const OBJECTS = [
  {
    apiVersion: "weft.dev/v1",
    kind: "BGPConfiguration",
    metadata: { name: "default" },
    spec: { asNumber: 64512, nodeToNodeMesh: false },
  },
  ...[1, 2].flatMap((r) =>
    ([4, 6] as const).map((f) => ({
      apiVersion: "weft.dev/v1",
      kind: "BGPPeer",
      metadata: { name: `rr-r${r}-v${f}` },
      spec: {
        nodeSelector: `kubernetes.io/hostname in (${RACK_NODES[r]})`,
        peerAddress: TOR(r, f),
        asNumber: 64512,
        bfd: true,
      },
    })),
  ),
];

describe("bgp racks, ToRs as route reflectors, dual-stack", { skip, timeout: 300_000 }, () => {
  const lab = new TorLab();
  /** node -> family -> { cidr, address } */
  const nodes = new Map<string, Map<4 | 6, { cidr: string; address: string }>>();
  const podIps: string[] = [];

  const missing = async (): Promise<string[]> => {
    const out: string[] = [];
    const tors = [await lab.bgpBest("tor1"), await lab.bgpBest("tor2")];
    const ext = await lab.installed("external");
    for (const [n, fams] of nodes)
      for (const [f, { cidr, address }] of fams) {
        const hops = tors[RACK[n] - 1].get(cidr);
        if (!hops?.includes(address)) out.push(`tor${RACK[n]}: ${cidr} via ${address} (has ${hops ?? "none"})`);
        if (ext.get(cidr) !== "bgp") out.push(`external: ${cidr}`);
        for (const m of nodes.keys()) {
          if (m === n) continue;
          const have = (await lab.routes(m, f)) as { dst: string; gateway?: string; protocol?: string }[];
          const r = have.find((x) => x.dst === cidr);
          const via = RACK[m] === RACK[n] ? address : undefined;
          if (!r || r.protocol !== "bird" || (via !== undefined && r.gateway !== via))
            out.push(`${m}: ${cidr} proto bird via ${via ?? `its ToR`} (has ${JSON.stringify(r ?? null)})`);
        }
      }
    return out;
  };

  before(async () => {
    await lab.up(UP);
    await lab.weftOk(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: OBJECTS }));
    await lab.applyPods(PODS);
    for (const p of await lab.waitRunning(KEYS)) podIps.push(...(p.status?.podIPs ?? []).map((x) => x.ip));
    assert.equal(podIps.length, 8);
    for (const n of await lab.nodes()) {
      const fams = new Map<4 | 6, { cidr: string; address: string }>();
      for (const f of [4, 6] as const) {
        const address = (n.status?.addresses ?? []).find(
          (a) => a.type === "InternalIP" && a.address.includes(":") === (f === 6),
        );
        const cidr = (n.spec?.podCIDRs ?? []).find((c) => c.includes(":") === (f === 6));
        assert.ok(address && cidr, `${n.metadata.name} has an IPv${f} address and pod CIDR`);
        fams.set(f, { cidr, address: address.address });
      }
      nodes.set(n.metadata.name, fams);
    }
    const until = Date.now() + 60_000;
    let m = await missing();
    while (m.length && Date.now() < until) {
      await sleep(300);
      m = await missing();
    }
    assert.deepEqual(m, [], "routes on the ToRs, the external router and every node");
  });
  after(async () => {
    await lab.down();
  });

  test("the ToRs list their racks' CIDRs (both families) with the owning node as next hop; nodes have every CIDR from BIRD", async () => {
    assert.deepEqual(await missing(), []);
  });

  test("the external namespace reaches every pod over IPv4 and IPv6", async () => {
    const failures: string[] = [];
    for (const ip of podIps) {
      const r = await lab.inNs("external", ["busybox", "ping", "-c", "2", "-W", "2", ip]);
      if (r.code !== 0) failures.push(`external -> ${ip}: ${r.stderr.trim()} ${r.stdout.slice(-100)}`);
    }
    assert.deepEqual(failures, []);
  });

  for (const family of [4, 6] as const) {
    test(`the all-pairs matrix over IPv${family} is connected`, async () => {
      const m = await lab.matrix(["--port", "80", "--family", String(family)]);
      assert.deepEqual(unconnected(m.matrix), []);
    });
  }
});
