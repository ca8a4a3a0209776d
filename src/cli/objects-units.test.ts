// The pure parts of the object commands: kubectl's age format, selector syntax, kind names, and
// which Pod spec changes count as changes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { selectorMatches } from "../k8s/index.js";
import { humanAge } from "./objects/print.js";
import { parseSelector } from "./objects/selector.js";
import { resolveKind } from "./objects/kinds.js";
import { podSpecUpdate } from "./objects/apply.js";
import type { StoredObject } from "../store/types.js";

test("AGE reads like kubectl's", () => {
  const now = Date.parse("2026-01-10T00:00:00Z");
  const ago = (s: number): string => humanAge(new Date(now - s * 1000).toISOString(), now);
  assert.equal(ago(5), "5s");
  assert.equal(ago(119), "119s");
  assert.equal(ago(200), "3m20s");
  assert.equal(ago(300), "5m");
  assert.equal(ago(45 * 60), "45m");
  assert.equal(ago(5 * 3600 + 180), "5h3m");
  assert.equal(ago(20 * 3600), "20h");
  assert.equal(ago(3 * 86400 + 4 * 3600), "3d4h");
  assert.equal(ago(45 * 86400), "45d");
  assert.equal(ago(800 * 86400), "2y70d");
  assert.equal(humanAge(undefined, now), "<unknown>");
});

test("selectors: equality, set and existence requirements, ANDed", () => {
  const m = (sel: string, labels: Record<string, string>): boolean => selectorMatches(parseSelector(sel), labels);
  assert.ok(m("app=web", { app: "web" }));
  assert.ok(m("app==web,tier", { app: "web", tier: "x" }));
  assert.ok(!m("app=web,tier", { app: "web" }));
  assert.ok(m("app!=web", {}), "!= matches a missing key, as in Kubernetes");
  assert.ok(!m("app!=web", { app: "web" }));
  assert.ok(m("env in (a, b)", { env: "b" }));
  assert.ok(!m("env notin (a,b)", { env: "a" }));
  assert.ok(m("!owner", { app: "x" }));
  assert.throws(() => parseSelector("a b"), /cannot parse "a b"/);
  assert.throws(() => parseSelector("app=,"), /empty requirement/);
  assert.throws(() => parseSelector("Bad_Key!/x=1"), /--selector/);
});

test("kind names: singular, plural, short, group-qualified, any case", () => {
  for (const w of ["ns", "Namespace", "NAMESPACES"]) assert.equal(resolveKind(w).kind, "Namespace");
  for (const w of ["po", "pod", "Pods"]) assert.equal(resolveKind(w).kind, "Pod");
  for (const w of ["netpol", "NetworkPolicy", "networkpolicies.networking.k8s.io"])
    assert.equal(resolveKind(w).kind, "NetworkPolicy");
  for (const w of ["no", "node", "nodes"]) assert.equal(resolveKind(w).kind, "Node");
  assert.throws(() => resolveKind("deploy"), /unknown resource type "deploy"/);
});

test("pod spec updates: only images may change; the scheduler's nodeName is kept", () => {
  const stored = {
    metadata: {},
    spec: { nodeName: "n1", containers: [{ name: "c", image: "a", ports: [{ containerPort: 80, protocol: "TCP" }] }] },
  } as unknown as StoredObject;
  const same = podSpecUpdate(stored, {
    containers: [{ name: "c", image: "b", ports: [{ containerPort: 80, protocol: "TCP" }] }],
  });
  assert.ok("spec" in same);
  assert.equal(same.spec.nodeName, "n1");
  const port = podSpecUpdate(stored, {
    containers: [{ name: "c", image: "a", ports: [{ containerPort: 81, protocol: "TCP" }] }],
  });
  assert.deepEqual(port, { forbidden: "spec.containers[0].ports[0].containerPort" });
  const extra = podSpecUpdate(stored, {
    hostNetwork: true,
    containers: [{ name: "c", image: "a", ports: [{ containerPort: 80, protocol: "TCP" }] }],
  });
  assert.deepEqual(extra, { forbidden: "spec.hostNetwork" });
});

test("pod spec updates: server-filled fields are kept; dropping a field the last manifest set is a change", () => {
  // As a Kubernetes API server stores a pod: defaults filled in.
  const defaulted = {
    restartPolicy: "Always",
    containers: [
      { name: "c", image: "a", imagePullPolicy: "IfNotPresent", ports: [{ containerPort: 80, protocol: "TCP" }] },
    ],
  };
  const stored = { metadata: { annotations: {} }, spec: defaulted } as unknown as StoredObject;
  const u = podSpecUpdate(stored, {
    containers: [{ name: "c", image: "b", ports: [{ containerPort: 80, protocol: "TCP" }] }],
  });
  assert.ok("spec" in u);
  assert.equal(u.spec.restartPolicy, "Always");
  assert.equal((u.spec.containers as Array<{ image: string; imagePullPolicy: string }>)[0].image, "b");
  assert.equal(
    (u.spec.containers as Array<{ image: string; imagePullPolicy: string }>)[0].imagePullPolicy,
    "IfNotPresent",
  );
  const applied = { spec: { hostNetwork: true, containers: [{ name: "c" }] } };
  const withLast = {
    metadata: { annotations: { "kubectl.kubernetes.io/last-applied-configuration": JSON.stringify(applied) } },
    spec: { hostNetwork: true, containers: [{ name: "c" }] },
  } as unknown as StoredObject;
  assert.deepEqual(podSpecUpdate(withLast, { containers: [{ name: "c" }] }), { forbidden: "spec.hostNetwork" });
  assert.ok("spec" in podSpecUpdate(withLast, { hostNetwork: true, containers: [{ name: "c" }] }));
});
