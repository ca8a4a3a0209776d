import { test } from "node:test";
import assert from "node:assert/strict";
import { explain, ExplainError } from "./explain.js";
import { namespaces, pods, policy } from "./testdata.js";
import { compile, localPodsFromCluster } from "./compile.js";

const denyAll = policy("x", "deny-all", { podSelector: {} });
const fromY = policy("x", "from-y", {
  podSelector: { matchLabels: { pod: "a" } },
  ingress: [
    { from: [{ podSelector: { matchLabels: { pod: "b" } } }] },
    { from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 80 }] },
  ],
});
const egressDns = policy("z", "dns-only", {
  podSelector: {},
  policyTypes: ["Egress"],
  egress: [{ ports: [{ protocol: "UDP", port: 53 }] }],
});
const input = { namespaces: namespaces(), pods: pods(), policies: [denyAll, fromY, egressDns] };

test("allowed: names the policy and the rule index that allow it", () => {
  const r = explain(input, "y/b", "x/a", 80);
  assert.equal(r.allowed, true);
  assert.equal(r.egress.isolated, false);
  assert.equal(r.ingress.isolated, true);
  assert.deepEqual(
    r.ingress.allowedBy.map((m) => [m.policy.namespace, m.policy.name, m.rule]),
    [["x", "from-y", 1]],
  );
  assert.deepEqual(r.ingress.policies.map((p) => p.name).sort(), ["deny-all", "from-y"]);
  assert.match(r.summary, /allowed .*x\/from-y ingress\[1\]/);
});

test("several rules allowing: all of them are named", () => {
  const also = policy("x", "also-b", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [
      { ports: [{ port: 81 }] },
      { from: [{ podSelector: { matchLabels: { pod: "b" } } }], ports: [{ port: 80 }] },
    ],
  });
  const r = explain({ ...input, policies: [...input.policies, also] }, "x/b", "x/a", 80, "TCP", 6);
  assert.equal(r.allowed, true);
  assert.deepEqual(r.ingress.allowedBy.map((m) => `${m.policy.name}[${m.rule}]`).sort(), ["also-b[1]", "from-y[0]"]);
  assert.equal(r.fromAddr, "fd00:10:244:1::2");
});

test("denied at ingress: names the isolating policies and the drop counter", () => {
  const r = explain(input, "y/b", "x/a", 81);
  assert.equal(r.allowed, false);
  assert.equal(r.ingress.allowed, false);
  assert.deepEqual(r.ingress.allowedBy, []);
  assert.ok(r.ingress.denyCounter?.startsWith("di_"));
  assert.match(r.summary, /denied \(ingress: isolated by x\/deny-all, x\/from-y/);
  const c = explain(input, "z/a", "x/c", 80);
  assert.equal(c.allowed, false);
  assert.deepEqual(
    c.ingress.policies.map((p) => p.name),
    ["deny-all"],
  );
});

test("denied at egress on the source's node", () => {
  const r = explain(input, "z/a", "y/a", 80);
  assert.equal(r.allowed, false);
  assert.equal(r.egress.allowed, false);
  assert.equal(r.ingress.allowed, true);
  assert.deepEqual(r.egress.policies, [{ namespace: "z", name: "dns-only" }]);
  const dns = explain(input, "z/a", "y/a", 53, "UDP");
  assert.equal(dns.allowed, true);
  assert.deepEqual(
    dns.egress.allowedBy.map((m) => `${m.policy.name}[${m.rule}]`),
    ["dns-only[0]"],
  );
});

test("a pod reaching itself is always allowed; unknown pods are errors", () => {
  assert.equal(explain(input, "x/a", "x/a", 81).allowed, true);
  assert.throws(() => explain(input, "x/nope", "x/a", 80), ExplainError);
  assert.throws(() => explain(input, "x/a", "q/a", 80), /pod q\/a not found/);
});

test("explain uses given node models when present", () => {
  const ps = pods();
  const models = new Map(
    ["node1", "node2"].map((n) => [
      n,
      compile({ namespaces: namespaces(), pods: ps, policies: [], node: n, local: localPodsFromCluster(ps, n) }),
    ]),
  );
  // The models say "no policies"; the objects say deny-all: explain follows the models it is given.
  const r = explain({ ...input, models }, "y/b", "x/a", 81);
  assert.equal(r.allowed, true);
});
