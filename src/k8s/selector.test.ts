import { test } from "node:test";
import assert from "node:assert/strict";
import { selectorKey, selectorMatches, selectorString } from "./selector.js";

test("empty selector matches everything, including unlabeled objects", () => {
  assert.ok(selectorMatches({}, {}));
  assert.ok(selectorMatches({}, undefined));
  assert.ok(selectorMatches({ matchLabels: {}, matchExpressions: [] }, { a: "b" }));
});

test("matchLabels and matchExpressions are ANDed", () => {
  const sel = {
    matchLabels: { app: "web" },
    matchExpressions: [{ key: "tier", operator: "In", values: ["fe", "be"] }],
  };
  assert.ok(selectorMatches(sel, { app: "web", tier: "fe" }));
  assert.ok(!selectorMatches(sel, { app: "web", tier: "db" }));
  assert.ok(!selectorMatches(sel, { app: "api", tier: "fe" }));
  assert.ok(!selectorMatches(sel, { app: "web" }));
});

test("operators: In, NotIn (missing key matches), Exists, DoesNotExist", () => {
  assert.ok(selectorMatches({ matchExpressions: [{ key: "k", operator: "NotIn", values: ["a"] }] }, {}));
  assert.ok(selectorMatches({ matchExpressions: [{ key: "k", operator: "NotIn", values: ["a"] }] }, { k: "b" }));
  assert.ok(!selectorMatches({ matchExpressions: [{ key: "k", operator: "NotIn", values: ["a"] }] }, { k: "a" }));
  assert.ok(selectorMatches({ matchExpressions: [{ key: "k", operator: "Exists" }] }, { k: "" }));
  assert.ok(!selectorMatches({ matchExpressions: [{ key: "k", operator: "Exists" }] }, { j: "x" }));
  assert.ok(selectorMatches({ matchExpressions: [{ key: "k", operator: "DoesNotExist" }] }, { j: "x" }));
  assert.ok(!selectorMatches({ matchExpressions: [{ key: "k", operator: "DoesNotExist" }] }, { k: "x" }));
  assert.ok(!selectorMatches({ matchExpressions: [{ key: "k", operator: "In", values: ["a"] }] }, {}));
  assert.ok(!selectorMatches({ matchExpressions: [{ key: "k", operator: "Bogus", values: ["a"] }] }, { k: "a" }));
});

test("selectorKey is independent of key and value order; selectorString reads like kubectl", () => {
  const a = selectorKey({
    matchLabels: { b: "2", a: "1" },
    matchExpressions: [{ key: "t", operator: "In", values: ["y", "x"] }],
  });
  const b = selectorKey({
    matchExpressions: [{ key: "t", operator: "In", values: ["x", "y"] }],
    matchLabels: { a: "1", b: "2" },
  });
  assert.equal(a, b);
  assert.notEqual(selectorKey({ matchLabels: { a: "1" } }), selectorKey({ matchLabels: { a: "2" } }));
  assert.equal(selectorString({}), "<all>");
  assert.equal(
    selectorString({
      matchLabels: { app: "a" },
      matchExpressions: [
        { key: "t", operator: "NotIn", values: ["x"] },
        { key: "e", operator: "Exists" },
      ],
    }),
    "app=a,t notin (x),e",
  );
});
