import { test } from "node:test";
import assert from "node:assert/strict";
import {
  validateNamespace,
  validateNetworkPolicy,
  validatePod,
  formatErrors,
  parseOrThrow,
  ValidationError,
} from "./validation.js";
import { defaultNetworkPolicy, effectivePolicyTypes, namespaceLabels } from "./defaults.js";
import type { NetworkPolicy } from "./types.js";

function np(spec: Record<string, unknown>, name = "p"): unknown {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, namespace: "x" },
    spec: { podSelector: {}, ...spec },
  };
}

/** The error lines of a policy that must be rejected. */
function errorsOf(obj: unknown): string[] {
  const r = validateNetworkPolicy(obj);
  assert.equal(r.ok, false, "expected the policy to be rejected");
  return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
}

function hasError(obj: unknown, path: string, fragment: string): void {
  const errs = errorsOf(obj);
  assert.ok(
    errs.some((e) => e.startsWith(`${path}: `) && e.includes(fragment)),
    `no "${fragment}" error at ${path}; got:\n${errs.join("\n")}`,
  );
}

test("a full, valid policy passes and keeps its content", () => {
  const obj = np({
    policyTypes: ["Ingress", "Egress"],
    ingress: [
      {
        from: [
          {
            namespaceSelector: { matchLabels: { ns: "y" } },
            podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["a", "b"] }] },
          },
          { ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } },
        ],
        ports: [{ port: 80 }, { protocol: "UDP", port: 1000, endPort: 2000 }, { port: "serve-80-tcp" }],
      },
    ],
    egress: [{ to: [{ ipBlock: { cidr: "fd00::/16", except: ["fd00:1::/32"] } }] }, {}],
  });
  const r = validateNetworkPolicy(obj);
  assert.ok(r.ok, r.ok ? "" : formatErrors(r.errors));
  assert.equal(r.value.spec.ingress?.[0].ports?.[1].endPort, 2000);
});

test("ipBlock: bad CIDR, except outside cidr, except not strictly smaller, family mismatch", () => {
  hasError(
    np({ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] }),
    "spec.ingress[0].from[0].ipBlock.cidr",
    "valid CIDR",
  );
  hasError(
    np({ ingress: [{ from: [{ ipBlock: { cidr: "banana" } }] }] }),
    "spec.ingress[0].from[0].ipBlock.cidr",
    "valid CIDR",
  );
  hasError(
    np({ ingress: [{ from: [{ podSelector: {} }, { ipBlock: { cidr: "10.0.0.0/16", except: ["10.1.0.0/24"] } }] }] }),
    "spec.ingress[0].from[1].ipBlock.except[0]",
    "must be a strict subset of `cidr`",
  );
  hasError(
    np({ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.0.0/16"] } }] }] }),
    "spec.ingress[0].from[0].ipBlock.except[0]",
    "strict subset",
  );
  hasError(
    np({ egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["fd00::/64"] } }] }] }),
    "spec.egress[0].to[0].ipBlock.except[0]",
    "strict subset",
  );
  hasError(
    np({ egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.0.0.0/x"] } }] }] }),
    "spec.egress[0].to[0].ipBlock.except[0]",
    "valid CIDR",
  );
});

test("peers: empty peer and ipBlock with a selector are rejected", () => {
  hasError(np({ ingress: [{ from: [{}] }] }), "spec.ingress[0].from[0]", "must specify a peer");
  hasError(
    np({ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] }] }),
    "spec.ingress[0].from[0]",
    "may not specify both ipBlock and another peer",
  );
});

test("ports: endPort rules, port range, unknown protocol, bad named port", () => {
  hasError(
    np({ ingress: [{ ports: [{ endPort: 90 }] }] }),
    "spec.ingress[0].ports[0].endPort",
    "may not be specified when `port` is not specified",
  );
  hasError(
    np({ ingress: [{ ports: [{ port: 90, endPort: 80 }] }] }),
    "spec.ingress[0].ports[0].endPort",
    "must be greater than or equal to `port`",
  );
  hasError(
    np({ egress: [{ ports: [{ port: "http", endPort: 80 }] }] }),
    "spec.egress[0].ports[0].endPort",
    "non-numeric",
  );
  hasError(np({ ingress: [{ ports: [{ port: 0 }] }] }), "spec.ingress[0].ports[0].port", "between 1 and 65535");
  hasError(
    np({ ingress: [{ ports: [{ port: 80, endPort: 70000 }] }] }),
    "spec.ingress[0].ports[0].endPort",
    "between 1 and 65535",
  );
  hasError(
    np({ ingress: [{ ports: [{ protocol: "ICMP", port: 80 }] }] }),
    "spec.ingress[0].ports[0].protocol",
    'Unsupported value: "ICMP"',
  );
  hasError(
    np({ ingress: [{ ports: [{ protocol: "tcp" }] }] }),
    "spec.ingress[0].ports[0].protocol",
    "Unsupported value",
  );
  hasError(np({ ingress: [{ ports: [{ port: "HTTP" }] }] }), "spec.ingress[0].ports[0].port", "alpha-numeric");
  hasError(np({ ingress: [{ ports: [{ port: "8080" }] }] }), "spec.ingress[0].ports[0].port", "at least one letter");
  hasError(
    np({ ingress: [{ ports: [{ port: "a-very-long-port-name" }] }] }),
    "spec.ingress[0].ports[0].port",
    "no more than 15",
  );
  const ok = validateNetworkPolicy(np({ ingress: [{ ports: [{ port: 80, endPort: 80 }, { protocol: "SCTP" }] }] }));
  assert.ok(ok.ok);
});

test("selectors: operator and values rules, label keys and values", () => {
  hasError(
    np({ podSelector: { matchExpressions: [{ key: "a", operator: "Equals", values: ["b"] }] } }),
    "spec.podSelector.matchExpressions[0].operator",
    "not a valid selector operator",
  );
  hasError(
    np({ podSelector: { matchExpressions: [{ key: "a", operator: "In", values: [] }] } }),
    "spec.podSelector.matchExpressions[0].values",
    "must be specified when `operator` is 'In' or 'NotIn'",
  );
  hasError(
    np({ podSelector: { matchExpressions: [{ key: "a", operator: "NotIn" }] } }),
    "spec.podSelector.matchExpressions[0].values",
    "must be specified",
  );
  hasError(
    np({ podSelector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] } }),
    "spec.podSelector.matchExpressions[0].values",
    "may not be specified",
  );
  hasError(
    np({ ingress: [{ from: [{ namespaceSelector: { matchLabels: { "bad key!": "v" } } }] }] }),
    "spec.ingress[0].from[0].namespaceSelector.matchLabels",
    "bad key!",
  );
  hasError(
    np({ ingress: [{ from: [{ podSelector: { matchLabels: { app: "-bad" } } }] }] }),
    "spec.ingress[0].from[0].podSelector.matchLabels",
    "valid label",
  );
  hasError(
    np({ podSelector: { matchExpressions: [{ key: "Example.COM/x", operator: "Exists" }] } }),
    "spec.podSelector.matchExpressions[0].key",
    "prefix part",
  );
  hasError(
    np({ podSelector: { matchLabels: { ["a".repeat(64)]: "v" } } }),
    "spec.podSelector.matchLabels",
    "no more than 63",
  );
  hasError(
    np({ podSelector: { matchLabels: { k: "v".repeat(64) } } }),
    "spec.podSelector.matchLabels",
    "no more than 63",
  );
  assert.ok(validateNetworkPolicy(np({ podSelector: { matchLabels: { "example.com/app": "v1.2_x", k: "" } } })).ok);
});

test("names: DNS-1123 subdomain for policies and pods, label for namespaces", () => {
  hasError(np({}, "Bad_Name"), "metadata.name", "RFC 1123 subdomain");
  assert.ok(validateNetworkPolicy(np({}, "allow.from-y")).ok);
  const badNs = validateNamespace({ metadata: { name: "has.dot" } });
  assert.equal(badNs.ok, false);
  assert.match(badNs.ok ? "" : formatErrors(badNs.errors), /^metadata\.name: .*RFC 1123 label/);
  assert.ok(
    validateNamespace({ apiVersion: "v1", kind: "Namespace", metadata: { name: "team-a", labels: { ns: "a" } } }).ok,
  );
  const longNs = validateNamespace({ metadata: { name: "n".repeat(64) } });
  assert.equal(longNs.ok, false);
});

test("policyTypes: unknown and duplicate values", () => {
  hasError(np({ policyTypes: ["Ingress", "Sideways"] }), "spec.policyTypes[1]", "Unsupported value");
  hasError(np({ policyTypes: ["Egress", "Egress"] }), "spec.policyTypes[1]", "Duplicate value");
});

test("structural errors name the field path", () => {
  hasError(
    { metadata: { name: "p" }, spec: { podSelector: {}, ingress: [{ ports: [{ port: true }] }] } },
    "spec.ingress[0].ports[0].port",
    "",
  );
  hasError({ metadata: { name: "p" }, spec: { egress: { to: [] } } }, "spec.egress", "");
  hasError(
    { metadata: { name: "p" }, spec: { podSelector: { matchLabels: { a: 1 } } } },
    "spec.podSelector.matchLabels.a",
    "",
  );
  const noSelector = validateNetworkPolicy({ metadata: { name: "p" }, spec: {} });
  assert.ok(noSelector.ok);
  assert.deepEqual(noSelector.value.spec.podSelector, {}, "a missing podSelector is the empty selector");
});

test("pods: container ports, protocols, addresses, names", () => {
  const pod = (over: Record<string, unknown>) => ({
    metadata: { name: "a", namespace: "x", labels: { pod: "a" } },
    spec: { containers: [{ name: "c", ports: [{ name: "http", containerPort: 80 }] }] },
    ...over,
  });
  assert.ok(validatePod(pod({ status: { podIP: "10.0.0.1", podIPs: [{ ip: "10.0.0.1" }, { ip: "fd00::1" }] } })).ok);
  const bad = validatePod(
    pod({
      spec: {
        containers: [
          {
            name: "c",
            ports: [
              { name: "http", containerPort: 0, protocol: "ICMP" },
              { name: "http", containerPort: 81 },
            ],
          },
        ],
      },
      status: { podIPs: [{ ip: "10.0.0.256" }] },
    }),
  );
  assert.equal(bad.ok, false);
  const text = bad.ok ? "" : formatErrors(bad.errors);
  assert.match(text, /spec\.containers\[0\]\.ports\[0\]\.containerPort: .*between 1 and 65535/);
  assert.match(text, /spec\.containers\[0\]\.ports\[0\]\.protocol: Unsupported value: "ICMP"/);
  assert.match(text, /spec\.containers\[0\]\.ports\[1\]\.name: Duplicate value: "http"/);
  assert.match(text, /status\.podIPs\[0\]\.ip: .*valid IP/);
  assert.throws(
    () => parseOrThrow("Pod", validatePod({ metadata: { name: "UPPER" }, spec: { containers: [{ name: "c" }] } }), {}),
    ValidationError,
  );
});

test("defaulting: policyTypes and protocol", () => {
  const base = validateNetworkPolicy(np({ ingress: [{ ports: [{ port: 80 }] }] }));
  assert.ok(base.ok);
  assert.deepEqual(effectivePolicyTypes(base.value), ["Ingress"]);
  const withEgress = validateNetworkPolicy(np({ egress: [{}] }));
  assert.ok(withEgress.ok);
  assert.deepEqual(effectivePolicyTypes(withEgress.value), ["Ingress", "Egress"]);
  const explicit = validateNetworkPolicy(np({ policyTypes: ["Egress"], ingress: [{}] }));
  assert.ok(explicit.ok);
  assert.deepEqual(effectivePolicyTypes(explicit.value), ["Egress"]);
  const d: NetworkPolicy = defaultNetworkPolicy(base.value);
  assert.equal(d.spec.ingress?.[0].ports?.[0].protocol, "TCP");
  assert.deepEqual(d.spec.policyTypes, ["Ingress"]);
  assert.equal(namespaceLabels({ metadata: { name: "x", labels: { a: "b" } } })["kubernetes.io/metadata.name"], "x");
});
