// The bgp gauges as Prometheus scrapes them: one series per session and direction, BIRD's health.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Registry } from "prom-client";
import { registerBgpMetrics } from "./bgp-metrics.js";
import type { AgentReport } from "./published.js";

test("bgp metrics: session state and prefix counts per peer, BIRD up; a gone session leaves no series", async () => {
  const report: AgentReport = {
    health: "ok",
    backend: "bgp",
    podMtu: 1500,
    pods: 0,
    peers: {},
    errors: [],
    sessions: [
      {
        peer: "n2",
        address: "10.250.0.3",
        state: "Established",
        since: "2026-12-08T02:00:00.000Z",
        imported: 1,
        exported: 1,
      },
      { peer: "tor-r1", address: "10.250.0.254", state: "Active", imported: 0, exported: 0 },
    ],
    daemon: { name: "bird", ok: true, detail: "BIRD 2.0.12 up" },
  };
  let current: AgentReport = report;
  const registry = new Registry();
  registerBgpMetrics(registry, () => current);
  const text = await registry.metrics();
  assert.match(text, /weft_bgp_session_established\{peer="n2",address="10\.250\.0\.3"\} 1/);
  assert.match(text, /weft_bgp_session_established\{peer="tor-r1",address="10\.250\.0\.254"\} 0/);
  assert.match(text, /weft_bgp_session_prefixes\{peer="n2",address="10\.250\.0\.3",direction="imported"\} 1/);
  assert.match(text, /weft_bgp_session_prefixes\{peer="n2",address="10\.250\.0\.3",direction="exported"\} 1/);
  assert.match(text, /weft_bgp_daemon_up 1/);
  current = { ...report, sessions: [report.sessions![0]], daemon: { name: "bird", ok: false, detail: "down" } };
  const later = await registry.metrics();
  assert.doesNotMatch(later, /tor-r1/);
  assert.match(later, /weft_bgp_daemon_up 0/);
});
