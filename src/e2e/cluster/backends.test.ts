// Each backend as a user checks it: a 3-node lab, a pod pinned to every node, and the all-pairs
// `lab matrix` connected over TCP and UDP; for vxlan and host-gw a dual-stack lab, probed over
// IPv4 and over IPv6 alone. One lab per backend, shared by its cases, always taken down.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { isIP } from "node:net";
import { ClusterLab, inCidr, matrixKeys, skipReason, unconnected, type NodeJson } from "./fixture.js";

const skip = skipReason();
const NODES = ["n1", "n2", "n3"];
// Two pods on n1 so node-local traffic is covered too; one on each other node.
const PODS = [
  { name: "a1", node: "n1" },
  { name: "a2", node: "n1" },
  { name: "b", node: "n2" },
  { name: "c", node: "n3" },
];
const KEYS = PODS.map((p) => `default/${p.name}`).sort();

const CASES = [
  { backend: "vxlan", dualStack: true },
  { backend: "host-gw", dualStack: true },
  { backend: "vxlan-direct", dualStack: false },
] as const;

for (const { backend, dualStack } of CASES) {
  describe(`backend ${backend}: 3 nodes${dualStack ? ", dual-stack" : ""}`, { skip, timeout: 180_000 }, () => {
    const lab = new ClusterLab();
    let nodes: NodeJson[] = [];

    before(async () => {
      await lab.up(["--nodes", "3", "--backend", backend, ...(dualStack ? ["--dual-stack"] : [])]);
      await lab.applyPods(PODS);
      await lab.waitRunning(KEYS);
      nodes = await lab.nodes();
    });
    after(async () => {
      await lab.down();
    });

    test("get nodes: every node Ready with its own pod CIDR(s) and its underlay address", () => {
      assert.deepEqual(nodes.map((n) => n.metadata.name).sort(), NODES);
      const cidrs = nodes.flatMap((n) => n.spec?.podCIDRs ?? []);
      assert.equal(new Set(cidrs).size, cidrs.length, `pod CIDRs overlap: ${cidrs.join(", ")}`);
      for (const n of nodes) {
        assert.equal(n.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", `${n.metadata.name} Ready`);
        const families = (n.spec?.podCIDRs ?? []).map((c) => isIP(c.split("/")[0]));
        assert.deepEqual(
          families,
          dualStack ? [4, 6] : [4],
          `${n.metadata.name} podCIDRs ${JSON.stringify(n.spec?.podCIDRs)}`,
        );
        assert.ok(
          n.status?.addresses?.some((a) => a.type === "InternalIP"),
          `${n.metadata.name} has an InternalIP`,
        );
      }
    });

    test("pods run on the node they name, with addresses from that node's pod CIDR(s)", async () => {
      const pods = await lab.pods();
      for (const want of PODS) {
        const p = pods.find((x) => x.metadata.name === want.name);
        assert.ok(p, `pod ${want.name} listed`);
        assert.equal(p.spec?.nodeName, want.node);
        const node = nodes.find((n) => n.metadata.name === want.node)!;
        assert.equal(p.status?.hostIP, node.status?.addresses?.find((a) => a.type === "InternalIP")?.address);
        const ips = (p.status?.podIPs ?? []).map((x) => x.ip);
        assert.equal(ips.length, dualStack ? 2 : 1, `${want.name} podIPs ${JSON.stringify(ips)}`);
        for (const ip of ips) {
          assert.ok(
            (node.spec?.podCIDRs ?? []).some((c) => inCidr(ip, c)),
            `${want.name}'s ${ip} is in ${want.node}'s ${node.spec?.podCIDRs?.join(",")}`,
          );
        }
      }
    });

    const families = dualStack ? [4, 6] : [4];
    for (const family of families) {
      for (const [protocol, port] of [
        ["TCP", 80],
        ["UDP", 53],
      ] as const) {
        test(`lab matrix ${protocol}/${port} over IPv${family}: every pod reaches every pod`, async () => {
          const m = await lab.matrix(["--port", String(port), "--protocol", protocol, "--family", String(family)]);
          assert.equal(m.port, port);
          assert.equal(m.protocol, protocol);
          assert.deepEqual(matrixKeys(m.matrix), { from: KEYS, to: KEYS }, "all pairs, every pod included");
          assert.deepEqual(unconnected(m.matrix), [], `${backend} IPv${family} ${protocol}: unconnected pairs`);
        });
      }
    }

    test("a closed port is not connected (the matrix can fail)", async () => {
      const m = await lab.matrix(["--port", "81", "--timeout-ms", "500"]);
      assert.equal(unconnected(m.matrix).length, KEYS.length * KEYS.length);
    });
  });
}
