// The fuzz generator is reproducible (same seed, same cases) and stays inside the test's world.
import { test } from "node:test";
import assert from "node:assert/strict";
import { caseDigest, fuzzCase, fuzzCases, Rng, type FuzzContext } from "./fuzz.js";

const ctx: FuzzContext = {
  socket: "/tmp/weft-fz/weft.sock",
  podNetns: "/run/netns/wt-fz-00000000",
  network: "fuzz",
  cniPath: "/tmp/weft-fz/cni",
};

test("same seed, same cases; another seed, other cases", () => {
  const a = fuzzCases(42, 500, ctx).map(caseDigest);
  const b = fuzzCases(42, 500, ctx).map(caseDigest);
  const c = fuzzCases(43, 500, ctx).map(caseDigest);
  assert.deepEqual(a, b);
  assert.ok(a.filter((d, i) => d !== c[i]).length > 450, "another seed gives other cases");
  // A case is rebuilt from (seed, index) alone, whatever was generated before it.
  assert.equal(caseDigest(fuzzCase(42, 317, ctx)), a[317]);
  assert.equal(new Set(a).size > 450, true, "cases differ from each other");
});

test("the generator covers every kind and the mutation families", () => {
  const cases = fuzzCases(7, 3000, ctx);
  const kinds = new Map<string, number>();
  for (const c of cases) kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
  for (const k of ["line", "frame", "plugin"]) assert.ok((kinds.get(k) ?? 0) > 200, `${k}: ${kinds.get(k)}`);
  const whats = cases.map((c) => c.what).join("\n");
  for (const w of [
    "truncated",
    "bit flip",
    "invalid UTF-8",
    "extra key",
    "removed",
    "unset CNI_",
    "length field",
    "padded",
    "random bytes",
    "1e999",
    "__proto__",
  ]) {
    assert.ok(whats.includes(w), `no case with ${w}`);
  }
  const texts = cases.map((c) =>
    c.kind === "plugin" ? JSON.stringify(c.env) + c.stdin.toString("latin1") : c.bytes.toString("latin1"),
  );
  assert.ok(
    texts.some((t) => t.includes("../")),
    "path traversal",
  );
  assert.ok(
    texts.some((t) => t.length > 1_000_000),
    "oversized input",
  );
  assert.ok(
    texts.some((t) => t.includes("[".repeat(10_000)) || t.includes('{"a":'.repeat(10_000))),
    "deep nesting",
  );
});

test("no case names a namespace other than the test's own, or a system CNI_PATH", () => {
  for (const c of fuzzCases(1, 3000, ctx)) {
    const t = c.kind === "plugin" ? JSON.stringify(c.env) + c.stdin.toString("latin1") : c.bytes.toString("latin1");
    assert.ok(!/\/proc\/|\/ns\/net|\/usr\/lib\/cni|\/opt\/cni/.test(t), `case ${c.index}: ${c.what}`);
  }
});

test("Rng: uniform enough and deterministic", () => {
  const r = new Rng(1);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 10_000; i++) counts[r.int(10)]++;
  for (const n of counts) assert.ok(n > 850 && n < 1150, String(counts));
  assert.equal(new Rng(99).u32(), new Rng(99).u32());
});
