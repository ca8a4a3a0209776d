// `weft status` never turns data it cannot read into "nothing": a node whose published agent
// report or backend data is damaged, or whose Node annotation was hand-edited (Kubernetes store),
// is shown with the problem, per node and in the "problems" list (table and -o json), and the
// cluster is not reported healthy. Against a real local store and the CLI as users run it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runStatus } from "../kernel/exec.js";
import { readAgentReport, readBackendData } from "../agent/published.js";
import { openStore } from "../store/index.js";
import type { ClusterStore, NodeLease } from "../store/types.js";
import { decodeNode } from "../store/kubernetes/store.js";
import type { ClusterStatus } from "./status.js";

const CLI = join(dirname(fileURLToPath(import.meta.url)), "main.js");
const goodReport = JSON.stringify({ health: "ok", backend: "vxlan", podMtu: 1450, pods: 0, peers: {}, errors: [] });

describe("readable or not: published node data", () => {
  test("absent is not a problem; damaged is, with the reason", () => {
    assert.deepEqual(readAgentReport({}), {});
    assert.equal(readAgentReport({ agent: goodReport }).report?.health, "ok");
    assert.match(readAgentReport({ agent: "{oops" }).problem ?? "", /agent report is not valid JSON/);
    assert.match(readAgentReport({ agent: '{"health":"fine"}' }).problem ?? "", /health is "fine"/);
    assert.match(readAgentReport({ agent: "[]" }).problem ?? "", /not a JSON object/);
    const withDevice = (device: unknown) =>
      readAgentReport({ agent: JSON.stringify({ ...JSON.parse(goodReport), device }) });
    const vtep = { name: "weft.1", offloads: { "tx-checksum-ip-generic": true, "tcp-segmentation-offload": true } };
    assert.deepEqual(withDevice(vtep).report?.device, vtep);
    assert.match(
      withDevice({ name: "weft.1", offloads: { tso: "yes" } }).problem ?? "",
      /device is not \{name, offloads\}/,
    );
    assert.equal(readBackendData({}).problem, undefined);
    assert.match(readBackendData({ backend: "nope" }).problem ?? "", /backend data is not valid JSON/);
  });

  test("a hand-edited weft annotation on a Kubernetes Node is a problem, not empty data", () => {
    const node = (backend: string) => ({
      metadata: {
        name: "n1",
        resourceVersion: "7",
        annotations: { "weft.dev/backend-data": backend, "weft.dev/underlay-addresses": "192.0.2.1" },
      },
      spec: { podCIDRs: ["10.244.1.0/24"] },
    });
    const bad = decodeNode(node("{broken"));
    assert.ok(bad, "still a weft node");
    assert.deepEqual(bad.backendData, {});
    assert.match(
      bad.problem ?? "",
      /annotation weft\.dev\/backend-data of Node n1 is not valid JSON .*restore it or restart the node's agent/,
    );
    assert.equal(decodeNode(node('{"backend":"{}"}'))?.problem, undefined);
    assert.match(decodeNode(node('{"n":1}'))?.problem ?? "", /not a JSON object of strings/);
  });
});

describe("weft status shows unreadable node data", () => {
  let dir: string;
  let store: ClusterStore;
  const leases: NodeLease[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-status-"));
    store = openStore({ kind: "local", stateDir: dir });
    await store.initCluster({ clusterCIDRs: ["10.244.0.0/16"], backend: "vxlan" });
    leases.push(
      await store.registerNode(
        { name: "good", addresses: ["192.0.2.1"], backendData: { backend: "{}", agent: goodReport } },
        { ttlSeconds: 60 },
      ),
    );
    leases.push(
      await store.registerNode(
        { name: "damaged", addresses: ["192.0.2.2"], backendData: { backend: "{}", agent: "{truncated" } },
        { ttlSeconds: 60 },
      ),
    );
  });
  after(async () => {
    for (const l of leases) await l.release();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("-o json: the node's problem field, the problems list, not healthy", async () => {
    const r = await runStatus([process.execPath, CLI, "status", "-o", "json", "--store", "local", "--state-dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as ClusterStatus;
    const damaged = s.nodes.find((n) => n.name === "damaged")!;
    assert.match(damaged.problem ?? "", /agent report is not valid JSON/);
    assert.equal(damaged.ready, false, "an unreadable report is not a ready node");
    assert.equal(s.nodes.find((n) => n.name === "good")!.problem, null);
    assert.ok(
      s.problems.some((p) => /^damaged: its agent report is not valid JSON/.test(p)),
      s.problems.join("\n"),
    );
    assert.equal(s.healthy, false);
  });

  test("the table lists it under problems", async () => {
    const r = await runStatus([process.execPath, CLI, "status", "--store", "local", "--state-dir", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^health: +degraded$/m);
    assert.match(r.stdout, /^problems:\n(?:.*\n)*? {2}damaged: its agent report is not valid JSON/m);
  });
});
