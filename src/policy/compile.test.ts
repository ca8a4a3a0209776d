// The upstream netpol e2e scenarios (namespaces x,y,z; pods a,b,c; ports 80/81 TCP+UDP) with
// expected reachability written by hand from the Kubernetes semantics, checked against what the
// compiled node models enforce (source node egress AND destination node ingress).
import { test } from "node:test";
import assert from "node:assert/strict";
import { diffMatrix, expect, matrix, policy, pods, namespaces, podAddr, type Matrix } from "./testdata.js";
import type { NetworkPolicy } from "../k8s/types.js";
import { compile, localPodsFromCluster } from "./compile.js";

type P = { ns: string; pod: string };
const is = (p: P, key: string) => `${p.ns}/${p.pod}` === key;

function check(
  policies: NetworkPolicy[],
  want: Matrix,
  port = 80,
  protocol: "TCP" | "UDP" | "SCTP" = "TCP",
  family: 4 | 6 = 4,
): void {
  const got = matrix(policies, port, protocol, family);
  const d = diffMatrix(want, got);
  assert.deepEqual(d, [], `reachability differs on ${protocol}/${port} IPv${family}:\n${d.join("\n")}`);
}

test("no policies: everything reaches everything", () => {
  check(
    [],
    expect(() => true),
  );
  check(
    [],
    expect(() => true),
    81,
    "UDP",
    6,
  );
});

test("default deny ingress in x isolates all of x, also from x itself (but not a pod from itself)", () => {
  const pols = [policy("x", "deny-all", { podSelector: {} })];
  check(
    pols,
    expect((_f, t) => t.ns !== "x"),
  );
  check(
    pols,
    expect((_f, t) => t.ns !== "x"),
    81,
    "UDP",
    6,
  );
});

test("default deny egress in x: x pods reach nothing, others still reach x", () => {
  const pols = [policy("x", "deny-egress", { podSelector: {}, policyTypes: ["Egress"] })];
  check(
    pols,
    expect((f) => f.ns !== "x"),
  );
});

test("allow from the same namespace (podSelector {} alone = the policy's namespace)", () => {
  const pols = [policy("x", "allow-same-ns", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })];
  check(
    pols,
    expect((f, t) => t.ns !== "x" || f.ns === "x"),
  );
});

test("allow to x/a from another namespace by namespace label", () => {
  const pols = [
    policy("x", "allow-from-y", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
    }),
  ];
  check(
    pols,
    expect((f, t) => !is(t, "x/a") || f.ns === "y"),
  );
});

test("allow from the automatic kubernetes.io/metadata.name namespace label", () => {
  const pols = [
    policy("x", "allow-from-z", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "z" } } }] }],
    }),
  ];
  check(
    pols,
    expect((f, t) => !is(t, "x/a") || f.ns === "z"),
  );
});

test("both selectors in one peer are ANDed", () => {
  const pols = [
    policy("x", "and", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [
        { from: [{ namespaceSelector: { matchLabels: { ns: "y" } }, podSelector: { matchLabels: { pod: "b" } } }] },
      ],
    }),
  ];
  check(
    pols,
    expect((f, t) => !is(t, "x/a") || is(f, "y/b")),
  );
});

test("separate peers are ORed (the podSelector peer is in the policy's namespace)", () => {
  const pols = [
    policy("x", "or", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [
        { from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }, { podSelector: { matchLabels: { pod: "b" } } }] },
      ],
    }),
  ];
  check(
    pols,
    expect((f, t) => !is(t, "x/a") || f.ns === "y" || is(f, "x/b")),
  );
});

test("namespaceSelector {} selects pods in all namespaces; with a podSelector, that pod in any namespace", () => {
  check(
    [
      policy("x", "all-ns", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ namespaceSelector: {} }] }],
      }),
      policy("x", "deny", { podSelector: {} }),
    ],
    expect((_f, t) => t.ns !== "x" || is(t, "x/a")),
  );
  check(
    [
      policy("x", "b-anywhere", {
        podSelector: { matchLabels: { pod: "a" } },
        ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: "b" } } }] }],
      }),
    ],
    expect((f, t) => !is(t, "x/a") || f.pod === "b"),
  );
});

test("matchExpressions in peers: NotIn and In", () => {
  const pols = [
    policy("x", "expr", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [
        {
          from: [
            {
              namespaceSelector: { matchExpressions: [{ key: "ns", operator: "NotIn", values: ["y"] }] },
              podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["b", "c"] }] },
            },
          ],
        },
      ],
    }),
  ];
  check(
    pols,
    expect((f, t) => !is(t, "x/a") || (f.ns !== "y" && f.pod !== "a")),
  );
});

test("named ports resolve on the destination pod, with protocol", () => {
  const tcp81 = [
    policy("x", "named", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ ports: [{ port: "serve-81-tcp" }] }],
    }),
  ];
  check(
    tcp81,
    expect((_f, t) => !is(t, "x/a")),
    80,
    "TCP",
  );
  check(
    tcp81,
    expect(() => true),
    81,
    "TCP",
  );
  check(
    tcp81,
    expect((_f, t) => !is(t, "x/a")),
    81,
    "UDP",
  );
  // The name of a UDP port with the default protocol (TCP) matches nothing.
  const wrongProto = [
    policy("x", "named", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ ports: [{ port: "serve-81-udp" }] }],
    }),
  ];
  check(
    wrongProto,
    expect((_f, t) => !is(t, "x/a")),
    81,
    "UDP",
  );
  const udp81 = [
    policy("x", "named", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ ports: [{ protocol: "UDP", port: "serve-81-udp" }] }],
    }),
  ];
  check(
    udp81,
    expect(() => true),
    81,
    "UDP",
  );
  check(
    udp81,
    expect(() => true),
    81,
    "UDP",
    6,
  );
});

test("named ports in egress resolve on the peer pods", () => {
  const pols = [
    policy("x", "egress-named", {
      podSelector: { matchLabels: { pod: "a" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: "serve-80-tcp" }] }],
    }),
  ];
  check(
    pols,
    expect(() => true),
    80,
    "TCP",
  );
  check(
    pols,
    expect((f) => !is(f, "x/a")),
    81,
    "TCP",
  );
  check(
    pols,
    expect(() => true),
    80,
    "TCP",
    6,
  );
});

test("port ranges with endPort", () => {
  const r = (port: number, endPort: number) => [
    policy("x", "range", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ port, endPort }] }] }),
  ];
  check(
    r(80, 81),
    expect(() => true),
    80,
  );
  check(
    r(80, 81),
    expect(() => true),
    81,
  );
  check(
    r(81, 90),
    expect((_f, t) => !is(t, "x/a")),
    80,
  );
  check(
    r(81, 90),
    expect(() => true),
    81,
  );
  check(
    r(81, 90),
    expect((_f, t) => !is(t, "x/a")),
    81,
    "UDP",
  );
});

test("port without protocol is TCP; protocol without port is all its ports; SCTP", () => {
  const tcp80 = [
    policy("x", "p", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ port: 80 }] }] }),
  ];
  check(
    tcp80,
    expect(() => true),
    80,
    "TCP",
  );
  check(
    tcp80,
    expect((_f, t) => !is(t, "x/a")),
    80,
    "UDP",
  );
  const allUdp = [
    policy("x", "p", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ protocol: "UDP" }] }] }),
  ];
  check(
    allUdp,
    expect(() => true),
    81,
    "UDP",
  );
  check(
    allUdp,
    expect((_f, t) => !is(t, "x/a")),
    81,
    "TCP",
  );
  const sctp = [
    policy("x", "p", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ ports: [{ protocol: "SCTP", port: 80 }] }],
    }),
  ];
  check(
    sctp,
    expect(() => true),
    80,
    "SCTP",
  );
  check(
    sctp,
    expect((_f, t) => !is(t, "x/a")),
    80,
    "TCP",
  );
});

test("ipBlock with except matches pod addresses, per family", () => {
  const pols = [
    policy("x", "cidr", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ ipBlock: { cidr: "10.244.0.0/16", except: ["10.244.2.0/24"] } }] }],
    }),
  ];
  check(
    pols,
    expect((f, t) => !is(t, "x/a") || f.ns !== "y"),
  );
  // An IPv4 block allows no IPv6 traffic.
  check(
    pols,
    expect((_f, t) => !is(t, "x/a")),
    80,
    "TCP",
    6,
  );
  const v6 = [
    policy("x", "cidr6", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ ipBlock: { cidr: "fd00:10:244::/48", except: [`${podAddr("z", "c", 6)}/128`] } }] }],
    }),
  ];
  check(
    v6,
    expect((f, t) => !is(t, "x/a") || !is(f, "z/c")),
    80,
    "TCP",
    6,
  );
});

test("egress deny with a DNS-style allow: only UDP 53 leaves x", () => {
  const pols = [
    policy("x", "dns-only", {
      podSelector: {},
      policyTypes: ["Egress"],
      egress: [
        {
          ports: [
            { protocol: "UDP", port: 53 },
            { protocol: "TCP", port: 53 },
          ],
        },
      ],
    }),
  ];
  check(
    pols,
    expect((f) => f.ns !== "x"),
    80,
    "TCP",
  );
  check(
    pols,
    expect(() => true),
    53,
    "UDP",
  );
  check(
    pols,
    expect(() => true),
    53,
    "TCP",
    6,
  );
  check(
    pols,
    expect((f) => f.ns !== "x"),
    53,
    "SCTP",
  );
});

test("egress to a namespace: x/a reaches only y, and egress needs the destination's ingress too", () => {
  const egress = policy("x", "to-y", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  check(
    [egress],
    expect((f, t) => !is(f, "x/a") || t.ns === "y"),
  );
  const ingressY = policy("y", "from-z", {
    podSelector: { matchLabels: { pod: "b" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "z" } } }] }],
  });
  check(
    [egress, ingressY],
    expect((f, t) => (!is(f, "x/a") || t.ns === "y") && (!is(t, "y/b") || f.ns === "z")),
  );
});

test("policies are additive", () => {
  const fromY = policy("x", "from-y", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  const fromZ = policy("x", "from-z", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "z" } } }] }],
  });
  check(
    [fromY, fromZ],
    expect((f, t) => !is(t, "x/a") || f.ns === "y" || f.ns === "z"),
  );
  const denyAll = policy("x", "deny-all", { podSelector: {} });
  const allowAll = policy("x", "allow-all", { podSelector: {}, ingress: [{}] });
  check(
    [denyAll, allowAll],
    expect(() => true),
  );
});

test("policyTypes defaulting: egress rules without policyTypes also isolate ingress", () => {
  const defaulted = policy("x", "eg", {
    podSelector: { matchLabels: { pod: "a" } },
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  check(
    [defaulted],
    expect((f, t) => !is(t, "x/a") && (!is(f, "x/a") || t.ns === "y")),
  );
  const explicit = policy("x", "eg", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  check(
    [explicit],
    expect((f, t) => !is(f, "x/a") || t.ns === "y"),
  );
  // Ingress rules of a policy whose policyTypes say only Egress are ignored.
  const ignored = policy("x", "eg", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: "nobody" } } }] }],
    egress: [{}],
  });
  check(
    [ignored],
    expect(() => true),
  );
});

test("a policy only affects pods in its own namespace", () => {
  const pols = [policy("y", "deny-a", { podSelector: { matchLabels: { pod: "a" } } })];
  check(
    pols,
    expect((_f, t) => !is(t, "y/a")),
  );
});

test("pods that are finished or have no address are not peers", () => {
  const ps = pods();
  const yb = ps.find((p) => p.metadata.namespace === "y" && p.metadata.name === "b")!;
  yb.status = { ...yb.status, phase: "Succeeded" };
  const pols = [
    policy("x", "from-y", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
    }),
  ];
  const m = compile({
    namespaces: namespaces(),
    pods: ps,
    policies: pols,
    node: "node1",
    local: localPodsFromCluster(ps, "node1"),
  });
  const set = m.podSets[0];
  assert.deepEqual(set.members, ["y/a", "y/c"]);
  assert.deepEqual(set.v4, [podAddr("y", "a"), podAddr("y", "c")]);
  assert.deepEqual(set.v6, [podAddr("y", "a", 6), podAddr("y", "c", 6)]);
});

test("the model names, per rule, the policy and rule index, and dedupes peer sets", () => {
  const p1 = policy("x", "one", {
    podSelector: {},
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }, { ports: [{ port: 81 }] }],
  });
  const p2 = policy("x", "two", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
  });
  const m = compile({
    namespaces: namespaces(),
    pods: pods(),
    policies: [p1, p2],
    node: "node1",
    local: localPodsFromCluster(pods(), "node1"),
  });
  assert.equal(m.podSets.length, 1, "the same peer in two policies is one set");
  const one = m.policies.find((p) => p.ref.name === "one")!;
  assert.deepEqual(
    one.ingress!.rules.map((r) => [r.policy.namespace, r.policy.name, r.index]),
    [
      ["x", "one", 0],
      ["x", "one", 1],
    ],
  );
  assert.equal(one.egress, null);
  const xa = m.localPods.find((p) => p.key === "x/a")!;
  assert.ok(xa.ingress.isolated);
  assert.deepEqual(xa.ingress.policies.map((p) => p.name).sort(), ["one", "two"]);
  assert.equal(xa.egress.isolated, false);
  const xc = m.localPods.find((p) => p.key === "x/c")!;
  assert.notEqual(xa.ingress.group, xc.ingress.group, "different policy sets, different groups");
  const allow = m.counters.filter((c) => c.kind === "allow");
  assert.equal(allow.length, 3);
  assert.ok(m.counters.some((c) => c.kind === "deny" && c.direction === "ingress"));
  // Nodes only carry policies selecting their own pods.
  const other = compile({
    namespaces: namespaces(),
    pods: pods(),
    policies: [policy("y", "p", { podSelector: { matchLabels: { pod: "b" } } })],
    node: "node1",
    local: localPodsFromCluster(pods(), "node1"),
  });
  assert.equal(other.policies.length, 0);
});

test("an address in one policy's except is still allowed by another policy's ipBlock (additive)", () => {
  const yb = `${podAddr("y", "b")}/32`;
  const pols = [
    policy("x", "cidr-except", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ ipBlock: { cidr: "10.244.0.0/16", except: [yb] } }] }],
    }),
    policy("x", "cidr-exact", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ ipBlock: { cidr: yb } }] }],
    }),
  ];
  check(
    pols,
    expect(() => true),
  );
  check(
    pols.slice(0, 1),
    expect((f, t) => !is(t, "x/a") || !is(f, "y/b")),
  );
});

test("egress to a CIDR with except; the client side can deny what the server allows", () => {
  const pols = [
    policy("x", "egress-cidr", {
      podSelector: { matchLabels: { pod: "a" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ ipBlock: { cidr: "10.244.2.0/24", except: [`${podAddr("y", "c")}/32`] } }] }],
    }),
    policy("y", "allow-all-in", { podSelector: {}, ingress: [{}] }),
  ];
  check(
    pols,
    expect((f, t) => !is(f, "x/a") || (t.ns === "y" && t.pod !== "c")),
  );
});

test("ingress and egress policies on one pod are independent", () => {
  const pols = [
    policy("x", "in", {
      podSelector: { matchLabels: { pod: "a" } },
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
    }),
    policy("x", "out", {
      podSelector: { matchLabels: { pod: "a" } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "z" } } }] }],
    }),
  ];
  check(
    pols,
    expect((f, t) => (!is(t, "x/a") || is(f, "x/b")) && (!is(f, "x/a") || t.ns === "z")),
  );
});

test("sibling sources: only interfaces of one pod (or one network namespace, by hint) may send each other's addresses", () => {
  const local = [
    { namespace: "x", name: "a", ifname: "wfa0", ips: ["10.0.0.1", "fd00::1"] },
    { namespace: "x", name: "a", ifname: "wfa1", ips: ["10.0.1.1"] },
    { namespace: "x", name: "b", ifname: "wfb0", ips: ["10.0.0.2"] },
    { namespace: "_cni", name: "c1", ifname: "wfc0", ips: ["10.0.0.3"] },
    { namespace: "_cni", name: "c2", ifname: "wfc1", ips: ["10.0.1.3"] },
    { namespace: "_cni", name: "d1", ifname: "wfd0", ips: ["10.0.0.4"], netns: "/run/netns/p1" },
    { namespace: "_cni", name: "d2", ifname: "wfd1", ips: ["10.0.1.4"], netns: "/run/netns/p1" },
    { namespace: "_cni", name: "e", ifname: "wfe0", ips: ["10.0.0.5"], netns: "/run/netns/p2" },
    // x/r re-created: the old sandbox and the new one coexist until the old one's DEL.
    { namespace: "x", name: "r", ifname: "wfr0", ips: ["10.0.0.6"], netns: "/run/netns/old" },
    { namespace: "x", name: "r", ifname: "wfr1", ips: ["10.0.0.7"], netns: "/run/netns/new" },
  ];
  const m = compile({
    namespaces: [],
    pods: [],
    policies: [],
    node: "n",
    local,
    sameNetns: [["wfc0", "wfc1", "wfgone"]],
  });
  assert.deepEqual(m.siblingSources, [
    { ifname: "wfa0", family: 4, addr: "10.0.1.1" },
    { ifname: "wfa1", family: 4, addr: "10.0.0.1" },
    { ifname: "wfa1", family: 6, addr: "fd00::1" },
    { ifname: "wfc0", family: 4, addr: "10.0.1.3" },
    { ifname: "wfc1", family: 4, addr: "10.0.0.3" },
    { ifname: "wfd0", family: 4, addr: "10.0.1.4" },
    { ifname: "wfd1", family: 4, addr: "10.0.0.4" },
  ]);
  const alone = compile({
    namespaces: [],
    pods: [],
    policies: [],
    node: "n",
    local: local.filter((l) => l.ifname !== "wfa1" && l.ifname !== "wfc1" && l.ifname !== "wfd1"),
    sameNetns: [["wfc0"]],
  });
  assert.deepEqual(alone.siblingSources, [], "single-interface pods get nothing");
});
