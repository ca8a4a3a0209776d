// NetworkPolicy end to end, after the upstream Kubernetes netpol e2e suite
// (test/e2e/network/netpol): namespaces x, y, z with pods a, b, c serving 80 and 81 on TCP and
// UDP, spread over 3 lab nodes. Each scenario applies policies with `weft apply`, waits until they
// are in force on every node, takes the full 9x9 `lab matrix` once and compares it with a truth
// table written by hand in the test. One lab for the whole file; policies (and labels) are reset
// between scenarios. Then: a pod born under default deny never passes a packet, changes while
// traffic flows never open a denied pair, an agent killed with -9 opens nothing, explain agrees
// with the matrix, invalid policies are rejected before they reach any node, SCTP policies compile.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { run } from "../../kernel/exec.js";
import { isAlive } from "../../lab/procs.js";
import { skipReason } from "../../testlib/lab.js";
import {
  NAMESPACES,
  NODES,
  PLACEMENT,
  PODS,
  NetpolLab,
  namespaceObj,
  netpol,
  podObj,
  sleep,
  type Family,
  type Flow,
  type Json,
  type Protocol,
} from "./fixture.js";
import { Reachability, type PodId } from "./reachability.js";

const skip = skipReason();
/** Dual-stack, so IPv6 gets its share of the checks (matrices default to IPv4, the first family). */
const LAB_FLAGS = ["--nodes", String(NODES.length), "--backend", "vxlan", "--dual-stack"];
const T0 = Date.now();

describe("NetworkPolicy e2e (x, y, z x a, b, c on 3 nodes)", { skip, timeout: 900_000 }, () => {
  const np = new NetpolLab();
  let ips = new Map<PodId, string>();
  let ips6 = new Map<PodId, string>();
  const timings: string[] = [];

  const expectMatrix = async (
    what: string,
    r: Reachability,
    port: number,
    protocol: Protocol = "TCP",
    family: Family = 4,
  ) => {
    const c = await np.check(r, port, protocol, family);
    timings.push(`${what} ${protocol}/${port}/IPv${family}: in force after ${c.convergedMs ?? "never"} ms`);
    assert.deepEqual(c.diff, [], `${what}:\n${c.table}`);
  };
  const all = () => new Reachability(PODS, true);
  const apply = (...objs: Json[]) => np.mustApply(objs);

  before(async () => {
    const up = await np.lab.cli(["up", ...LAB_FLAGS]);
    assert.equal(up.code, 0, `lab up: ${up.stderr}`);
    await apply(
      ...NAMESPACES.map(namespaceObj),
      ...PODS.map((id) => {
        const [ns, name] = id.split("/");
        return podObj(ns, name, PLACEMENT[id]);
      }),
    );
    const pods = await np.waitRunning(PODS);
    ips = new Map(PODS.map((id) => [id, pods.get(id)!.ip]));
    ips6 = new Map(PODS.map((id) => [id, pods.get(id)!.ips.find((a) => a.includes(":")) ?? ""]));
    for (const id of PODS)
      assert.ok(ips6.get(id), `${id} has an IPv6 address too (dual-stack lab): ${pods.get(id)!.ips.join(", ")}`);
    for (const id of PODS) assert.equal(pods.get(id)!.node, PLACEMENT[id], `${id} runs on its node`);
    // Every pod server answers on every port before any policy exists.
    for (const [port, proto] of [
      [80, "TCP"],
      [81, "UDP"],
    ] as const)
      await expectMatrix("no policy", all(), port, proto);
    await expectMatrix("no policy", all(), 80, "TCP", 6);
  });

  after(async () => {
    await np.down();
    process.stderr.write(
      `netpol e2e timings (total ${Math.round((Date.now() - T0) / 1000)} s):\n  ${timings.join("\n  ")}\n`,
    );
  });

  // Every scenario starts from no policies and the original labels; the previous scenario's
  // blocked pairs must connect again (a deleted policy restores connectivity). The next matrix
  // then checks every pair.
  let dirtyLabels = false;
  beforeEach(async () => {
    await np.stopFlows();
    await np.deleteAppliedPolicies();
    if (dirtyLabels) {
      // Re-applying the originals is an in-place label update (same pods, same addresses).
      await apply(
        ...NAMESPACES.map(namespaceObj),
        ...PODS.map((id) => podObj(id.split("/")[0], id.split("/")[1], PLACEMENT[id])),
      );
      dirtyLabels = false;
    }
    await np.waitRestored();
  });

  // ---- scenarios with a fixed set of policies ----------------------------------------------

  test("default-deny ingress in x isolates every pod of x and nothing else", async () => {
    await apply(netpol("x", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }));
    await expectMatrix("deny ingress", all().expectPeer({}, { ns: "x" }, false), 80);
    await expectMatrix("deny ingress", all().expectPeer({}, { ns: "x" }, false), 80, "TCP", 6);
  });

  test("default-deny egress in x: x reaches nothing, everyone still reaches x", async () => {
    await apply(netpol("x", "deny-egress", { podSelector: {}, policyTypes: ["Egress"] }));
    await expectMatrix("deny egress", all().expectPeer({ ns: "x" }, {}, false), 80);
  });

  test("default-deny all (ingress and egress), also for UDP", async () => {
    await apply(netpol("x", "deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }));
    const r = all().expectPeer({}, { ns: "x" }, false).expectPeer({ ns: "x" }, {}, false);
    await expectMatrix("deny all", r, 80);
    await expectMatrix("deny all", r, 81, "UDP");
    await expectMatrix("deny all", r, 81, "UDP", 6);
  });

  test("allow-all ingress `ingress: [{}]` for x/a next to a default deny in x", async () => {
    await apply(
      netpol("x", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }),
      netpol("x", "allow-all-to-a", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{}] }),
    );
    await expectMatrix("allow all to x/a", all().expectAllIngress("x/b", false).expectAllIngress("x/c", false), 80);
  });

  test("allow from the same namespace only (podSelector {} peer)", async () => {
    await apply(netpol("x", "same-ns", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }));
    await expectMatrix(
      "same namespace",
      all().expectPeer({ ns: "y" }, { ns: "x" }, false).expectPeer({ ns: "z" }, { ns: "x" }, false),
      80,
    );
  });

  test("allow from another namespace by namespaceSelector on kubernetes.io/metadata.name", async () => {
    await apply(
      netpol("x", "from-y", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "y" } } }] }],
      }),
    );
    const r = all()
      .expectPeer({ ns: "x" }, { ns: "x", pod: "a" }, false)
      .expectPeer({ ns: "z" }, { ns: "x", pod: "a" }, false);
    await expectMatrix("from ns y", r, 80);
    await expectMatrix("from ns y", r, 80, "TCP", 6);
  });

  const notX = { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["x"] }] };
  test("podSelector AND namespaceSelector in one peer", async () => {
    await apply(
      netpol("x", "and", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ namespaceSelector: notX, podSelector: { matchLabels: { pod: "b" } } }] }],
      }),
    );
    await expectMatrix(
      "ns AND pod",
      all().expectAllIngress("x/a", false).expect("y/b", "x/a", true).expect("z/b", "x/a", true),
      80,
    );
  });

  test("podSelector OR namespaceSelector in two peers", async () => {
    await apply(
      netpol("x", "or", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ namespaceSelector: notX }, { podSelector: { matchLabels: { pod: "b" } } }] }],
      }),
    );
    await expectMatrix("ns OR pod", all().expect("x/c", "x/a", false), 80);
  });

  test("matchExpressions: In, NotIn, Exists, DoesNotExist", async () => {
    await apply(
      // x/a: from pods without a tier label in namespaces that have a team label (y/a, y/b).
      netpol("x", "exists", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchExpressions: [{ key: "team", operator: "Exists" }] },
                podSelector: { matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] },
              },
            ],
          },
        ],
      }),
      // x/b (pod In [b]): from pods of x that are not a (x/c).
      netpol("x", "in-notin", {
        podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["b"] }] },
        ingress: [
          { from: [{ podSelector: { matchExpressions: [{ key: "pod", operator: "NotIn", values: ["a"] }] } }] },
        ],
      }),
    );
    const r = all()
      .expectAllIngress("x/a", false)
      .expect("y/a", "x/a", true)
      .expect("y/b", "x/a", true)
      .expectAllIngress("x/b", false)
      .expect("x/c", "x/b", true);
    await expectMatrix("match expressions", r, 80);
  });

  test("a port by number; a port without protocol is TCP only", async () => {
    await apply(
      netpol("x", "port-81", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ port: 81 }] }] }),
    );
    await expectMatrix("port 81", all().expectAllIngress("x/a", false), 80);
    await expectMatrix("port 81", all(), 81);
    await expectMatrix("port 81 (no protocol = TCP)", all().expectAllIngress("x/a", false), 81, "UDP");
  });

  test("named ports (serve-81-tcp, serve-81-udp with protocol UDP)", async () => {
    await apply(
      netpol("x", "named", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ ports: [{ port: "serve-81-tcp" }, { port: "serve-81-udp", protocol: "UDP" }] }],
      }),
    );
    await expectMatrix("named ports", all().expectAllIngress("x/a", false), 80);
    await expectMatrix("named ports", all(), 81);
    await expectMatrix("named ports", all(), 81, "UDP");
    await expectMatrix("named ports", all().expectAllIngress("x/a", false), 80, "UDP");
  });

  test("endPort: a port range 81-90", async () => {
    await apply(
      netpol("x", "range", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ ports: [{ protocol: "TCP", port: 81, endPort: 90 }] }],
      }),
    );
    await expectMatrix("range 81-90", all().expectAllIngress("x/a", false), 80);
    await expectMatrix("range 81-90", all(), 81);
  });

  test("UDP port, and a protocol without a port", async () => {
    await apply(
      netpol("x", "udp-81", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ ports: [{ protocol: "UDP", port: 81 }] }],
      }),
      netpol("x", "any-udp", {
        podSelector: { matchLabels: { pod: "b" } },
        ingress: [{ ports: [{ protocol: "UDP" }] }],
      }),
    );
    await expectMatrix("udp", all().expectAllIngress("x/a", false).expectAllIngress("x/b", false), 81, "TCP");
    await expectMatrix("udp", all().expectAllIngress("x/a", false), 80, "UDP");
    await expectMatrix("udp", all(), 81, "UDP");
  });

  test("ipBlock with except, ingress and egress (pod addresses)", async () => {
    await apply(
      netpol("x", "cidr-in", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ ipBlock: { cidr: "10.244.0.0/16", except: [`${ips.get("y/b")}/32`] } }] }],
      }),
      netpol("y", "cidr-out", {
        podSelector: { matchLabels: { pod: "c" } },
        policyTypes: ["Egress"],
        egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: [`${ips.get("z/c")}/32`] } }] }],
      }),
    );
    await expectMatrix("ipBlock except", all().expect("y/b", "x/a", false).expect("y/c", "z/c", false), 80);
  });

  test("egress denied except to one namespace", async () => {
    await apply(
      netpol("x", "egress-to-y", {
        podSelector: {},
        policyTypes: ["Egress"],
        egress: [{ to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "y" } } }] }],
      }),
    );
    await expectMatrix(
      "egress to y",
      all().expectPeer({ ns: "x" }, { ns: "x" }, false).expectPeer({ ns: "x" }, { ns: "z" }, false),
      80,
    );
  });

  test("egress on a named port (resolved on the destination pods, on every node)", async () => {
    await apply(
      netpol("x", "egress-named", {
        podSelector: {},
        policyTypes: ["Egress"],
        egress: [{ ports: [{ port: "serve-81-tcp" }] }],
      }),
    );
    await expectMatrix("egress named port", all().expectPeer({ ns: "x" }, {}, false), 80);
    await expectMatrix("egress named port", all(), 81);
    await expectMatrix("egress named port (TCP only)", all().expectPeer({ ns: "x" }, {}, false), 81, "UDP");
    await expectMatrix("egress named port", all().expectPeer({ ns: "x" }, {}, false), 80, "TCP", 6);
    await expectMatrix("egress named port", all(), 81, "TCP", 6);
  });

  test("IPv6 ipBlock with except; an IPv6 block allows no IPv4 traffic", async () => {
    await apply(
      netpol("x", "v6-block", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ ipBlock: { cidr: "fd00:244::/48", except: [`${ips6.get("y/b")}/128`] } }] }],
      }),
    );
    await expectMatrix("IPv6 ipBlock", all().expect("y/b", "x/a", false), 80, "TCP", 6);
    await expectMatrix("IPv6 ipBlock", all().expectAllIngress("x/a", false), 80);
  });

  test("ingress and egress specified together", async () => {
    await apply(
      netpol("x", "both", {
        podSelector: { matchLabels: { pod: "a" } },
        policyTypes: ["Ingress", "Egress"],
        ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
        egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
      }),
    );
    await expectMatrix(
      "ingress+egress",
      all()
        .expectAllIngress("x/a", false)
        .expect("x/b", "x/a", true)
        .expectAllEgress("x/a", false)
        .expectPeer({ ns: "x", pod: "a" }, { ns: "y" }, true),
      80,
    );
  });

  test("an address in one ipBlock's except but inside another peer's cidr is allowed", async () => {
    await apply(
      netpol("x", "overlap-in", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [
          {
            from: [
              { ipBlock: { cidr: "10.244.0.0/16", except: [`${ips.get("y/b")}/32`, `${ips.get("z/b")}/32`] } },
              { ipBlock: { cidr: `${ips.get("y/b")}/32` } },
            ],
          },
        ],
      }),
      netpol("y", "overlap-out", {
        podSelector: { matchLabels: { pod: "c" } },
        policyTypes: ["Egress"],
        egress: [
          {
            to: [
              { ipBlock: { cidr: "0.0.0.0/0", except: ["10.244.0.0/16"] } },
              { ipBlock: { cidr: `${ips.get("z/a")}/32` } },
            ],
          },
        ],
      }),
    );
    await expectMatrix(
      "overlapping ipBlocks",
      all().expect("z/b", "x/a", false).expectAllEgress("y/c", false).expect("y/c", "z/a", true),
      80,
    );
  });

  test("an allow-all egress policy `egress: [{}]` wins over a default deny", async () => {
    await apply(
      netpol("x", "deny-egress", { podSelector: {}, policyTypes: ["Egress"] }),
      netpol("x", "a-egress-all", {
        podSelector: { matchLabels: { pod: "a" } },
        policyTypes: ["Egress"],
        egress: [{}],
      }),
    );
    await expectMatrix("egress allow-all wins", all().expectAllEgress("x/b", false).expectAllEgress("x/c", false), 80);
  });

  test("egress to pods by podSelector AND namespaceSelector on a UDP port", async () => {
    await apply(
      netpol("x", "egress-udp", {
        podSelector: { matchLabels: { pod: "a" } },
        policyTypes: ["Egress"],
        egress: [
          {
            to: [
              {
                namespaceSelector: { matchExpressions: [{ key: "team", operator: "Exists" }] },
                podSelector: { matchLabels: { pod: "c" } },
              },
            ],
            ports: [{ protocol: "UDP", port: 80 }],
          },
        ],
      }),
    );
    await expectMatrix("egress UDP to y/c", all().expectAllEgress("x/a", false).expect("x/a", "y/c", true), 80, "UDP");
    await expectMatrix("egress UDP to y/c", all().expectAllEgress("x/a", false), 80);
  });

  test("without policyTypes, a policy with only egress rules isolates ingress too", async () => {
    await apply(
      netpol("x", "egress-only-rules", {
        podSelector: { matchLabels: { pod: "a" } },
        egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
      }),
    );
    await expectMatrix(
      "default policyTypes",
      all()
        .expectAllIngress("x/a", false)
        .expectAllEgress("x/a", false)
        .expectPeer({ ns: "x", pod: "a" }, { ns: "y" }, true),
      80,
    );
  });

  test("empty from and ports lists match everything", async () => {
    await apply(
      netpol("x", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }),
      netpol("x", "empty-lists", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [], ports: [] }] }),
    );
    const r = all().expectAllIngress("x/b", false).expectAllIngress("x/c", false);
    await expectMatrix("empty lists", r, 80);
    await expectMatrix("empty lists", r, 81, "UDP");
  });

  test("a named port is resolved per pod: the same name on different numbers (ingress and egress)", async () => {
    // Two more pods: x/d serves "web" on 81 (80 unnamed), z/d serves "web" on 80 (81 unnamed).
    const extra = (ns: string, node: string, web: number, other: number) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "d", namespace: ns, labels: { pod: "d" } },
      spec: {
        nodeName: node,
        containers: [
          {
            name: "web",
            image: "lab",
            ports: [
              { name: "web", containerPort: web, protocol: "TCP" },
              { containerPort: other, protocol: "TCP" },
            ],
          },
        ],
      },
    });
    await apply(extra("x", "n2", 81, 80), extra("z", "n3", 80, 81));
    try {
      await np.waitRunning(["x/d", "z/d"]);
      const pods = [...PODS, "x/d", "z/d"];
      await apply(
        netpol("x", "web-in", { podSelector: {}, ingress: [{ ports: [{ port: "web" }] }] }),
        netpol("y", "web-out", {
          podSelector: { matchLabels: { pod: "a" } },
          policyTypes: ["Egress"],
          egress: [{ ports: [{ port: "web" }] }],
        }),
      );
      const base = () => new Reachability(pods, true).expectPeer({}, { ns: "x" }, false).expectAllEgress("y/a", false);
      await expectMatrix("named port per pod", base().expect("y/a", "z/d", true), 80);
      await expectMatrix("named port per pod", base().expectAllIngress("x/d", true).expect("y/a", "x/d", true), 81);
      await np.deleteAppliedPolicies();
      await np.waitRestored();
    } finally {
      await np.weft(["delete", "pod", "d", "-n", "x"]);
      await np.weft(["delete", "pod", "d", "-n", "z"]);
      const end = Date.now() + 30_000;
      while (Date.now() < end && [...(await np.pods()).keys()].some((k) => k.endsWith("/d"))) await sleep(300);
    }
  });

  test("multiple policies are additive; `weft explain` agrees with the matrix", async () => {
    await apply(
      netpol("x", "from-b", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
      }),
      netpol("x", "from-z", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "z" } } }] }],
      }),
      netpol("y", "c-egress-none", { podSelector: { matchLabels: { pod: "c" } }, policyTypes: ["Egress"] }),
    );
    const r = all()
      .expectAllIngress("x/a", false)
      .expect("x/b", "x/a", true)
      .expectPeer({ ns: "z" }, { ns: "x", pod: "a" }, true)
      .expectAllEgress("y/c", false);
    const c = await np.check(r, 80);
    timings.push(`additive TCP/80: in force after ${c.convergedMs ?? "never"} ms`);
    assert.deepEqual(c.diff, [], c.table);
    const verdict = c.matrix;
    const cases: Array<[PodId, PodId, RegExp]> = [
      ["x/b", "x/a", /x\/from-b/],
      ["z/c", "x/a", /x\/from-z/],
      ["y/a", "x/a", /from-b|from-z/],
      ["y/c", "z/a", /y\/c-egress-none/],
      ["y/a", "z/a", /./],
    ];
    const explained = await Promise.all(
      cases.map(([from, to]) => np.weft(["explain", from, to, "--port", "80", "-o", "json"])),
    );
    cases.forEach(([from, to, names], i) => {
      const e = explained[i];
      assert.ok(e.code === 0 || e.code === 1, `explain ${from} ${to}: exit ${e.code} ${e.stderr}`);
      const j = JSON.parse(e.stdout) as { allowed: boolean; summary: string };
      assert.equal(e.code === 0, j.allowed, "exit 0 = allowed, 1 = denied");
      assert.equal(
        j.allowed,
        verdict[from][to],
        `explain ${from} -> ${to} says ${j.allowed ? "allowed" : "denied"}, the matrix says ${verdict[from][to] ? "connected" : "blocked"}: ${e.stdout}`,
      );
      assert.match(e.stdout, names, `explain names the deciding policy: ${e.stdout}`);
    });
  });

  test("a policy in another namespace has no effect on same-named pods elsewhere", async () => {
    await apply(netpol("y", "isolate-a", { podSelector: { matchLabels: { pod: "a" } }, policyTypes: ["Ingress"] }));
    await expectMatrix("policy in y", all().expectAllIngress("y/a", false), 80);
  });

  test("a policy updated in place (port 80 -> 81) takes effect; deleting it restores everything", async () => {
    const pol = (port: number) =>
      netpol("x", "only-port", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ ports: [{ port, protocol: "TCP" }] }],
      });
    await apply(pol(80));
    await expectMatrix("port 80 allowed", all().expectAllIngress("x/a", false), 81);
    await expectMatrix("port 80 allowed", all(), 80);
    await apply(pol(81));
    await expectMatrix("updated to port 81", all().expectAllIngress("x/a", false), 80);
    await expectMatrix("updated to port 81", all(), 81);
    await np.must(["delete", "netpol", "only-port", "-n", "x"]);
    await expectMatrix("deleted", all(), 80);
    await expectMatrix("deleted", all(), 81);
  });

  test("a pod label change moves pods into and out of selectors (target and peer)", async () => {
    dirtyLabels = true;
    await apply(
      netpol("x", "by-label", {
        podSelector: { matchLabels: { isolated: "yes" } },
        ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { access: "yes" } } }] }],
      }),
    );
    await np.must(["label", "pod", "c", "-n", "x", "isolated=yes"]);
    await expectMatrix("x/c labelled isolated", all().expectAllIngress("x/c", false), 80);
    await np.must(["label", "pod", "a", "-n", "y", "access=yes"]);
    await expectMatrix("y/a labelled access", all().expectAllIngress("x/c", false).expect("y/a", "x/c", true), 80);
    await np.must(["label", "pod", "a", "-n", "y", "access-"]);
    await expectMatrix("y/a label removed", all().expectAllIngress("x/c", false), 80);
    await np.must(["label", "pod", "c", "-n", "x", "isolated-"]);
    await expectMatrix("x/c label removed", all(), 80);
  });

  test("a namespace label change moves its pods into and out of a namespaceSelector", async () => {
    dirtyLabels = true;
    await apply(
      netpol("x", "trusted-ns", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "trusted" } } }] }],
      }),
    );
    await expectMatrix("no trusted namespace", all().expectAllIngress("x/a", false), 80);
    await np.must(["label", "ns", "z", "env=trusted"]);
    await expectMatrix(
      "z trusted",
      all().expectAllIngress("x/a", false).expectPeer({ ns: "z" }, { ns: "x", pod: "a" }, true),
      80,
    );
    await np.must(["label", "ns", "z", "env-"]);
    await expectMatrix("z untrusted again", all().expectAllIngress("x/a", false), 80);
  });

  test("SCTP: an SCTP-only policy is accepted and compiled, isolates TCP; SCTP probes exit 2 on this kernel", async () => {
    await apply(
      netpol("x", "sctp-only", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ ports: [{ protocol: "SCTP", port: 80 }] }],
      }),
    );
    // Upstream: "should not allow access by TCP when a policy specifies only SCTP".
    await expectMatrix("SCTP only", all().expectAllIngress("x/a", false), 80);
    const show = await np.must(["policy", "show", "--node", PLACEMENT["x/a"]]);
    assert.match(show.stdout, /x\/sctp-only/, show.stdout);
    assert.match(show.stdout, /SCTP\/80/, show.stdout);
    const nft = await run(["nft", "list", "table", "inet", "weft"], { netns: np.nodeNetns(PLACEMENT["x/a"]) });
    assert.match(nft, /sctp dport 80/, "the node's kernel table matches SCTP port 80");
    const m = await np.lab.cli(["matrix", "--protocol", "SCTP", "--port", "80", "--timeout-ms", "300", "-o", "json"]);
    assert.equal(m.code, 2, `matrix --protocol SCTP: ${m.stdout}${m.stderr}`);
    assert.match(m.stderr, /SCTP/);
    assert.match(m.stderr, /kernel/);
    const p = await np.lab.cli(["probe", "y/a", "x/a", "--protocol", "SCTP", "--port", "80"]);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /SCTP/);
  });

  // ---- invalid input ---------------------------------------------------------------------

  test("invalid NetworkPolicies are rejected naming the field, and nothing reaches any node", async () => {
    const tables = async () =>
      Promise.all(
        NODES.map((n) =>
          run(["nft", "-s", "list", "table", "inet", "weft"], { netns: np.nodeNetns(n) }).catch(
            (e: Error) => `(${e.message})`,
          ),
        ),
      );
    const before = await tables();
    const a = { matchLabels: { pod: "a" } };
    const bad: Array<[string, Json, RegExp]> = [
      [
        "bad CIDR",
        netpol("x", "bad-cidr", { podSelector: a, ingress: [{ from: [{ ipBlock: { cidr: "10.244.0.0/33" } }] }] }),
        /spec\.ingress\[0\]\.from\[0\]\.ipBlock\.cidr/,
      ],
      [
        "except outside cidr",
        netpol("x", "bad-except", {
          podSelector: a,
          ingress: [{ from: [{ ipBlock: { cidr: "10.244.0.0/16", except: ["10.245.0.0/24"] } }] }],
        }),
        /spec\.ingress\[0\]\.from\[0\]\.ipBlock\.except\[0\]/,
      ],
      [
        "unknown protocol",
        netpol("x", "bad-proto", { podSelector: a, ingress: [{ ports: [{ protocol: "ICMP", port: 80 }] }] }),
        /spec\.ingress\[0\]\.ports\[0\]\.protocol/,
      ],
      [
        "bad operator",
        netpol("x", "bad-op", {
          podSelector: { matchExpressions: [{ key: "pod", operator: "Contains", values: ["a"] }] },
          policyTypes: ["Ingress"],
        }),
        /spec\.podSelector\.matchExpressions\[0\]\.operator/,
      ],
      [
        "egress except outside cidr",
        netpol("x", "bad-egress", {
          podSelector: a,
          policyTypes: ["Egress"],
          egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["0.0.0.0/0"] } }] }],
        }),
        /spec\.egress\[0\]\.to\[0\]\.ipBlock\.except\[0\]/,
      ],
    ];
    const results = await Promise.all(bad.map(([, pol]) => np.apply([pol])));
    for (const [i, [what, , field]] of bad.entries()) {
      const r = results[i];
      assert.notEqual(r.code, 0, `${what} was accepted`);
      assert.match(r.stderr, field, `${what}: the error names the field`);
      assert.equal(r.stderr.trim().split("\n").length, 1, `${what}: one line: ${r.stderr}`);
    }
    // A valid policy in the same List as an invalid one is not written either.
    const mixed = await np.apply([
      netpol("x", "deny-all-valid", { podSelector: {}, policyTypes: ["Ingress"] }),
      bad[0][1],
    ]);
    assert.notEqual(mixed.code, 0);
    assert.deepEqual(await np.policies(), [], "no policy was stored");
    await sleep(500); // what an agent would need to react to a stored change
    assert.deepEqual(await tables(), before, "no node's ruleset changed");
    await expectMatrix("after invalid applies", all(), 80);
  });

  // ---- changes while traffic flows ------------------------------------------------------

  /** Start time of the first failed attempt of `id` after `t` that opens a run of >= n failures. */
  const deniedSince = (f: Flow, id: string, t: number, n = 4): number | null => {
    const xs = f.lines
      .filter((l) => l.id === id && (l.t as number) >= t)
      .sort((p, q) => (p.t as number) - (q.t as number));
    for (let i = 0; i + n <= xs.length; i++) if (xs.slice(i, i + n).every((l) => !l.ok)) return xs[i].t as number;
    return null;
  };
  const firstOk = (f: Flow, id: string, t: number): number | null => {
    const xs = f.lines.filter((l) => l.id === id && l.ok && (l.t as number) >= t).map((l) => l.t as number);
    return xs.length ? Math.min(...xs) : null;
  };
  const okBetween = (f: Flow, id: string, from: number, to: number) =>
    f.lines.filter((l) => l.id === id && l.ok && (l.t as number) >= from && (l.t as number) < to);
  const attemptsBetween = (f: Flow, id: string, from: number, to: number) =>
    f.lines.filter((l) => l.id === id && (l.t as number) >= from && (l.t as number) < to);
  const until = async (what: string, cond: () => boolean, timeoutMs = 20_000) => {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
      await sleep(50);
    }
  };
  const prober = (from: PodId, id: string, to: PodId, port = 80) =>
    np.startFlow(np.podNetns(from), ["probe", JSON.stringify([{ id, host: ips.get(to), port }]), "20", "250"]);

  test("policy and label changes while traffic flows: pairs flip as expected, a denied pair never opens", async () => {
    dirtyLabels = true;
    // flip: y/b -> x/a opens while y/b has access=yes; deny1/deny2: z/b and x/b -> x/a stay denied
    // while the policy exists, through label changes, an in-place policy update and churn.
    const flip = prober("y/b", "flip", "x/a");
    const deny1 = prober("z/b", "deny1", "x/a");
    const deny2 = prober("x/b", "deny2", "x/a");
    const control = prober("y/a", "control", "z/c");
    const t0 = Date.now();
    await until("all pairs connect before the policy", () =>
      [
        [flip, "flip"],
        [deny1, "deny1"],
        [deny2, "deny2"],
        [control, "control"],
      ].every(([f, id]) => firstOk(f as Flow, id as string, t0) !== null),
    );
    const guard = (extra: Json[] = []) =>
      netpol("x", "guard", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { access: "yes" } } }] }, ...extra],
      });
    const tApply = Date.now();
    await apply(guard());
    await until("the guard policy drops all three pairs", () =>
      [
        [flip, "flip"],
        [deny1, "deny1"],
        [deny2, "deny2"],
      ].every(([f, id]) => deniedSince(f as Flow, id as string, tApply) !== null),
    );
    const tDenied = Math.max(
      ...[
        [flip, "flip"],
        [deny1, "deny1"],
        [deny2, "deny2"],
      ].map(([f, id]) => deniedSince(f as Flow, id as string, tApply)!),
    );

    const tLabel = Date.now();
    await np.must(["label", "pod", "b", "-n", "y", "access=yes"]);
    await until("y/b -> x/a opens after the label", () => firstOk(flip, "flip", tLabel) !== null);
    const tOpen = firstOk(flip, "flip", tLabel)!;
    // Churn that concerns other pods and rules: an in-place update adding a rule, unrelated labels.
    await apply(guard([{ ports: [{ port: 81 }] }]));
    await np.must(["label", "pod", "c", "-n", "z", "churn=1"]);
    await np.must(["label", "ns", "y", "churn=1"]);
    await sleep(1000);
    const tUnlabel = Date.now();
    await np.must(["label", "pod", "b", "-n", "y", "access-"]);
    await until("y/b -> x/a closes after the label is removed", () => deniedSince(flip, "flip", tUnlabel) !== null);
    const tClosed = deniedSince(flip, "flip", tUnlabel)!;
    await sleep(500);
    const tDelete = Date.now();
    await np.must(["delete", "netpol", "guard", "-n", "x"]);
    await until(
      "the denied pairs open after the delete",
      () => firstOk(deny1, "deny1", tDelete) !== null && firstOk(deny2, "deny2", tDelete) !== null,
    );
    await np.stopFlows();

    const report = `apply +${tDenied - tApply} ms to deny, label +${tOpen - tLabel} ms to open, unlabel +${tClosed - tUnlabel} ms to close`;
    timings.push(`traffic during changes: ${report}`);
    for (const [f, id] of [
      [deny1, "deny1"],
      [deny2, "deny2"],
    ] as const) {
      assert.ok(attemptsBetween(f, id, tDenied, tDelete).length > 50, `${id}: attempts all along`);
      assert.deepEqual(okBetween(f, id, tDenied, tDelete), [], `${id}: no connection while denied (${report})`);
    }
    assert.deepEqual(okBetween(flip, "flip", tDenied, tLabel), [], "y/b -> x/a stays closed until the label");
    assert.deepEqual(
      okBetween(flip, "flip", tClosed, tDelete),
      [],
      "y/b -> x/a stays closed after the label is removed",
    );
    assert.ok(okBetween(flip, "flip", tOpen, tUnlabel).length > 0);
    const ctl = attemptsBetween(control, "control", t0, tDelete);
    assert.ok(
      ctl.filter((l) => l.ok).length >= ctl.length * 0.9,
      `an unrelated pair keeps connecting: ${ctl.filter((l) => l.ok).length}/${ctl.length}`,
    );
  });

  // ---- agent crash ----------------------------------------------------------------------

  test("an agent killed with -9 and restarted with policies in force opens nothing", async () => {
    await apply(netpol("x", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }));
    await expectMatrix("before the crash", all().expectPeer({}, { ns: "x" }, false), 80);
    const node = PLACEMENT["x/a"];
    // Same node and across nodes, into the pod whose node loses its agent.
    const local = prober("y/c", "local", "x/a");
    const remote = prober("z/a", "remote", "x/a");
    const control = prober("z/b", "control", "y/c");
    await sleep(500);
    const st = np.state();
    const agent = st.nodes.find((n) => n.name === node)!.agent!;
    const tKill = Date.now();
    process.kill(agent.pid, "SIGKILL");
    await until("the agent is gone", () => !isAlive(agent), 5000);
    await sleep(1000);
    const up = await np.lab.cli(["up", ...LAB_FLAGS]);
    assert.equal(up.code, 0, up.stderr);
    const restarted = np.state().nodes.find((n) => n.name === node)!.agent!;
    assert.notEqual(restarted.pid, agent.pid, "lab up started a new agent");
    const tUp = Date.now();
    await sleep(1500);
    await np.stopFlows();
    for (const [f, id] of [
      [local, "local"],
      [remote, "remote"],
    ] as const) {
      const tries = attemptsBetween(f, id, tKill - 400, Date.now());
      assert.ok(tries.length > (tUp - tKill) / 40, `${id}: probed all along (${tries.length} attempts)`);
      assert.deepEqual(
        tries.filter((l) => l.ok),
        [],
        `${id}: no connection into x/a across the crash and restart`,
      );
    }
    assert.ok(firstOk(control, "control", tUp) !== null, "allowed traffic on that node flows after the restart");
    timings.push(`agent restart: ${tUp - tKill} ms from kill to lab up returning`);
    // The new agent enforces changes: allow from y, and y/c -> x/a opens.
    await apply(
      netpol("x", "from-y", {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
      }),
    );
    await expectMatrix(
      "after the restart",
      all().expectPeer({ ns: "x" }, { ns: "x" }, false).expectPeer({ ns: "z" }, { ns: "x" }, false),
      80,
    );
  });

  // ---- a pod born under default deny ------------------------------------------------------

  /*
   * Can a new pod under a default-deny policy pass a single packet before its rules exist?
   *
   * The lab kubelet makes the pod's network namespace (ip netns add, idempotent), runs CNI ADD and
   * only then starts the pod server, so the server cannot witness the window between wiring and
   * rules. Instead the test makes the pod's namespace itself, under the name the kubelet will use
   * (the kubelet adopts an existing one), and starts a helper in it before the Pod exists:
   *   - it binds UDP 5555 on all addresses at once (so anything reaching the pod is counted from
   *     the very first packet), checks every millisecond for an IPv4 address, reports it the
   *     moment it appears, and from then on sends a datagram to a peer pod's UDP 5556 every ms;
   *   - in the peer pod (y/a, another node), a blaster listens on UDP 5556 and, as soon as the
   *     address is reported, sends a datagram to the new pod's UDP 5555 every millisecond.
   * So both directions are tried from the moment the pod has an address (before CNI ADD returns),
   * through the end of ADD and the pod's start, and counted by the receiving sockets. Under
   * default deny both counts must be 0. The same harness for a pod in z (no policy) must count
   * packets both ways: that shows it can see them.
   */
  const bornUnder = async (ns: string, name: string) => {
    const netns = np.names.podNetns(ns, name);
    await run(["ip", "netns", "add", netns]);
    await run(["ip", "link", "set", "lo", "up"], { netns: `/run/netns/${netns}` });
    try {
      const inside = np.startFlow(`/run/netns/${netns}`, ["inside", ips.get("y/a")!, "5556"]);
      const blaster = np.startFlow(np.podNetns("y/a"), ["blast", "5555", "5556"]);
      await inside.waitLine((l) => l.ready === true, 10_000);
      await blaster.waitLine((l) => l.ready === true, 10_000);
      inside.onLine((l) => {
        if (typeof l.addr === "string") blaster.child.stdin?.write(`${l.addr}\n`);
      });
      await apply(podObj(ns, name, "n1"));
      const addr = await inside.waitLine((l) => typeof l.addr === "string", 30_000);
      await np.waitRunning([`${ns}/${name}`]);
      const tRunning = Date.now();
      await sleep(1000);
      await inside.stop();
      await blaster.stop();
      const i = inside.lines.find((l) => "attempts" in l) ?? {};
      const b = blaster.lines.find((l) => "sent" in l) ?? {};
      return { addrAt: addr.t as number, tRunning, inside: i, blaster: b };
    } finally {
      await np.weft(["delete", "pod", name, "-n", ns]);
      const end = Date.now() + 20_000;
      while (Date.now() < end && (await run(["ip", "netns", "list"])).includes(netns)) await sleep(200);
      // If the kubelet never adopted it, it is still ours to remove.
      if ((await run(["ip", "netns", "list"])).includes(netns))
        await run(["ip", "netns", "del", netns]).catch(() => undefined);
    }
  };

  test("a pod created under default deny cannot send or receive a single packet before its rules exist", async () => {
    // Control: no policy in z, so the harness must see traffic both ways.
    const ctl = await bornUnder("z", "fresh");
    timings.push(`new pod control: ${JSON.stringify(ctl)}`);
    assert.ok((ctl.inside.received as number) > 0, `control: the new pod received the blast: ${JSON.stringify(ctl)}`);
    assert.ok(
      (ctl.blaster.received as number) > 0,
      `control: the peer received the new pod's datagrams: ${JSON.stringify(ctl)}`,
    );
    // ...and sees it inside the window that matters: before the pod was Running (its server starts
    // only after CNI ADD returned).
    assert.ok(
      (ctl.inside.firstReceived as number) < ctl.tRunning && (ctl.blaster.firstReceived as number) < ctl.tRunning,
      `control: traffic seen before the pod ran: ${JSON.stringify(ctl)}`,
    );

    await apply(netpol("x", "deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }));
    await expectMatrix("deny all", all().expectPeer({}, { ns: "x" }, false).expectPeer({ ns: "x" }, {}, false), 80);
    const r = await bornUnder("x", "fresh");
    timings.push(`new pod under deny: ${JSON.stringify(r)}`);
    assert.ok(
      (r.blaster.sent as number) > 500 && (r.blaster.firstSend as number) < r.tRunning,
      `the blast ran from the address on: ${JSON.stringify(r)}`,
    );
    assert.ok((r.inside.attempts as number) > 500, `the new pod tried to send all along: ${JSON.stringify(r)}`);
    assert.equal(r.inside.received, 0, `no packet reached the new pod: ${JSON.stringify(r)}`);
    assert.equal(r.blaster.received, 0, `no packet from the new pod reached its peer: ${JSON.stringify(r)}`);
  });
});
