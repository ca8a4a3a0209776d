// Metrics from counter readings: per-policy sums, monotonic across counter renames and resets,
// served on loopback. (Readings from the real kernel are covered by e2e/policy/controller.test.ts.)
import { test } from "node:test";
import assert from "node:assert/strict";
import type { CounterReading } from "./controller.js";
import { createPolicyMetrics, startMetricsServer } from "./metrics.js";

const p1 = { namespace: "x", name: "p1" };
const p2 = { namespace: "x", name: "p2" };
const allow = (name: string, packets: number): CounterReading => ({
  name,
  kind: "allow",
  direction: "ingress",
  policy: p1,
  rule: 0,
  packets,
  bytes: packets * 100,
});
const deny = (name: string, group: string, packets: number): CounterReading => ({
  name,
  kind: "deny",
  direction: "ingress",
  group,
  policies: [p1, p2],
  packets,
  bytes: packets * 60,
});

function value(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

test("per-policy counters accumulate deltas: group renames and counter resets never make them go down", async () => {
  const scrapes: CounterReading[][] = [
    [allow("ci_a_0", 5), deny("dgi_1", "gi_1", 3), { name: "spoofed", kind: "spoof", packets: 1, bytes: 60 }],
    // A reload renamed the group (a policy joined and left): its counter starts over.
    [allow("ci_a_0", 7), deny("dgi_2", "gi_2", 1)],
    // The allow counter was reset (its policy was deleted and re-created).
    [allow("ci_a_0", 2), deny("dgi_2", "gi_2", 4)],
  ];
  let i = 0;
  const { registry } = createPolicyMetrics({ counters: async () => scrapes[Math.min(i++, scrapes.length - 1)] });
  const srv = await startMetricsServer(registry, { port: 0 });
  try {
    const scrape = async () => (await fetch(`http://127.0.0.1:${srv.port}/metrics`)).text();
    const allowS = 'weft_policy_packets_total{namespace="x",policy="p1",direction="ingress",verdict="allow"}';
    const denyP1 = 'weft_policy_packets_total{namespace="x",policy="p1",direction="ingress",verdict="deny"}';
    const denyP2 = 'weft_policy_packets_total{namespace="x",policy="p2",direction="ingress",verdict="deny"}';
    let t = await scrape();
    assert.equal(value(t, allowS), 5);
    assert.equal(value(t, denyP1), 3);
    assert.equal(value(t, denyP2), 3, "a drop under two policies counts for each");
    assert.equal(value(t, "weft_policy_spoofed_packets_total"), 1);
    assert.equal(
      value(t, 'weft_policy_group_denied_packets_total{direction="ingress",group="gi_1",policies="x/p1,x/p2"}'),
      3,
    );
    assert.equal(
      value(t, 'weft_policy_bytes_total{namespace="x",policy="p1",direction="ingress",verdict="allow"}'),
      500,
    );
    t = await scrape();
    assert.equal(value(t, allowS), 7);
    assert.equal(value(t, denyP1), 4);
    t = await scrape();
    assert.equal(value(t, allowS), 9, "a reset counter adds its new value");
    assert.equal(value(t, denyP1), 7);
    assert.equal(value(t, 'weft_policy_rule_packets_total{namespace="x",policy="p1",direction="ingress",rule="0"}'), 9);
    assert.equal((await fetch(`http://127.0.0.1:${srv.port}/`)).status, 404);
  } finally {
    await srv.close();
  }
});

test("the metrics server binds loopback by default and rejects bad ports", async () => {
  const { registry } = createPolicyMetrics({ counters: async () => [] });
  const srv = await startMetricsServer(registry, { port: 0 });
  try {
    const res = await fetch(`http://127.0.0.1:${srv.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
  } finally {
    await srv.close();
  }
  await assert.rejects(startMetricsServer(registry, { port: 70000 }), /not in 0\.\.65535/);
});

test("the controller's commit and compile statistics are exported as gauges", async () => {
  const stats = {
    fullApplies: 2,
    elementApplies: 9,
    incrementalApplies: 7,
    fullCompiles: 3,
    failures: 1,
    immediateAdds: 0,
    lastApplyMs: null,
    lastError: "x",
  };
  const { registry } = createPolicyMetrics({ counters: async () => [], stats });
  const t = await registry.metrics();
  assert.equal(value(t, 'weft_policy_applies{kind="full"}'), 2);
  assert.equal(value(t, 'weft_policy_applies{kind="elements"}'), 9);
  assert.equal(value(t, 'weft_policy_compiles{kind="full"}'), 3);
  assert.equal(value(t, 'weft_policy_compiles{kind="incremental"}'), 7);
  assert.equal(value(t, "weft_policy_apply_failures"), 1);
  stats.incrementalApplies++;
  assert.equal(value(await registry.metrics(), 'weft_policy_compiles{kind="incremental"}'), 8, "read at each scrape");
});
