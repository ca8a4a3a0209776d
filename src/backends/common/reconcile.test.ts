import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { run } from "../../kernel/exec.js";
import { emptyPlan } from "./plan.js";
import { reconcile } from "./reconcile.js";

/** A namespace with a veth pair d0/d1 up, d0 holding 10.9.0.1/24: somewhere to route via. */
async function vethNs(): Promise<{ ns: string; netns: string }> {
  const ns = `wt-${randomBytes(3).toString("hex")}-rec`;
  await run(["ip", "netns", "add", ns]);
  try {
    await run(["ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    for (const d of ["d0", "d1"]) await run(["ip", "-n", ns, "link", "set", d, "up"]);
    await run(["ip", "-n", ns, "addr", "add", "10.9.0.1/24", "dev", "d0"]);
  } catch (e) {
    await run(["ip", "netns", "del", ns]);
    throw e;
  }
  return { ns, netns: `/run/netns/${ns}` };
}

test("reconcile: a kernel write that fails is charged to its peer alone; other peers are wired", async () => {
  const { ns, netns } = await vethNs();
  try {
    const good = emptyPlan("good");
    good.routes.push({ dst: "10.244.1.0/24", via: "10.9.0.2", dev: "d0", onlink: false });
    good.paths["10.244.1.0/24"] = "direct";
    const bad = emptyPlan("bad");
    bad.routes.push({ dst: "10.244.2.0/24", via: "10.9.0.3", dev: "gone0", onlink: false });
    bad.paths["10.244.2.0/24"] = "direct";
    const r = await reconcile({ ctx: { netns }, routeProtocol: 230, vtep: null, plans: [bad, good], rejected: [] });
    const byName = new Map(r.peers.map((p) => [p.name, p]));
    assert.equal(byName.get("good")?.ok, true);
    assert.deepEqual(byName.get("good")?.paths, { "10.244.1.0/24": "direct" });
    assert.equal(byName.get("bad")?.ok, false);
    assert.deepEqual(byName.get("bad")?.paths, {});
    assert.match(
      byName.get("bad")?.errors[0] ?? "",
      /^peer bad: add route 10\.244\.2\.0\/24 via 10\.9\.0\.3 dev gone0 failed: .*gone0/,
    );
    assert.deepEqual(
      r.changes.map((c) => [c.action, c.object, c.peer]),
      [["add", "route", "good"]],
    );
    assert.match(
      await run(["ip", "-n", ns, "route", "show", "proto", "230"]),
      /^10\.244\.1\.0\/24 via 10\.9\.0\.2 dev d0 *\n$/,
    );
  } finally {
    await run(["ip", "netns", "del", ns]);
  }
});

test("reconcile: an incremental sync diffs against the last complete sync; a full sync repairs drift", async () => {
  const { ns, netns } = await vethNs();
  try {
    const plan = (peer: string, n: number) => {
      const p = emptyPlan(peer);
      p.routes.push({ dst: `10.244.${n}.0/24`, via: `10.9.0.${n + 1}`, dev: "d0", onlink: false });
      return p;
    };
    const memo = {};
    const reads: string[] = [];
    const ctx = {
      netns,
      onCommand: (argv: readonly string[], kind: string) => {
        if (kind === "read") reads.push(argv.join(" "));
      },
    };
    const routes = async () =>
      (await run(["ip", "-n", ns, "route", "show", "proto", "230"]))
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" ")[0])
        .sort();
    await reconcile({
      ctx,
      routeProtocol: 230,
      vtep: null,
      plans: [plan("a", 1)],
      rejected: [],
      memo,
      trustMemo: true,
    });
    assert.ok(reads.length > 0, "the first sync lists the kernel: there is nothing to trust yet");
    // Drift: someone deletes a's route. An incremental sync adding b does not list the kernel, so
    // it leaves the drift; a full sync puts a's route back.
    await run(["ip", "-n", ns, "route", "del", "10.244.1.0/24", "proto", "230"]);
    reads.length = 0;
    const inc = await reconcile({
      ctx,
      routeProtocol: 230,
      vtep: null,
      plans: [plan("a", 1), plan("b", 2)],
      rejected: [],
      memo,
      trustMemo: true,
    });
    assert.deepEqual(reads, []);
    assert.deepEqual(
      inc.changes.map((c) => [c.action, c.peer]),
      [["add", "b"]],
    );
    assert.deepEqual(await routes(), ["10.244.2.0/24"]);
    const full = await reconcile({
      ctx,
      routeProtocol: 230,
      vtep: null,
      plans: [plan("a", 1), plan("b", 2)],
      rejected: [],
      memo,
    });
    assert.ok(reads.length > 0);
    assert.deepEqual(
      full.changes.map((c) => [c.action, c.peer]),
      [["add", "a"]],
    );
    assert.deepEqual(await routes(), ["10.244.1.0/24", "10.244.2.0/24"]);
    // A failed write forgets the memo: the next incremental sync lists the kernel again.
    const bad = emptyPlan("c");
    bad.routes.push({ dst: "10.244.3.0/24", via: "10.9.0.4", dev: "gone0", onlink: false });
    await reconcile({
      ctx,
      routeProtocol: 230,
      vtep: null,
      plans: [plan("a", 1), plan("b", 2), bad],
      rejected: [],
      memo,
      trustMemo: true,
    });
    reads.length = 0;
    await reconcile({
      ctx,
      routeProtocol: 230,
      vtep: null,
      plans: [plan("a", 1)],
      rejected: [],
      memo,
      trustMemo: true,
    });
    assert.ok(reads.length > 0);
    assert.deepEqual(await routes(), ["10.244.1.0/24"]);
  } finally {
    await run(["ip", "netns", "del", ns]);
  }
});
