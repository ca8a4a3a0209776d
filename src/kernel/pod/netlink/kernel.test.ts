// NetlinkKernel against the real kernel, in namespaces the test makes: the PodKernel case suite
// (../cases.ts), then what only this implementation does (its errors, its batched deletions).
// The kernel runs in a child process inside its own test "host" namespace (as the agent does).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createNetns, removeAllNetns, weftLinks } from "../../../testlib/netns.js";
import type { RouteInfo } from "../types.js";
import { RemoteKernelError } from "../../../testlib/kernel-host.js";
import { kernelWorlds, podKernelCases, wireTwo, wiring } from "../cases.js";

after(removeAllNetns);
const world = kernelWorlds();

podKernelCases("netlink");

test("errors name what clashed or is missing, and say 'File exists' where iproute2 did", async () => {
  const w = await world("netlink");
  await w.k.call("wirePod", wiring(w.a, "wf00000000aaa", 1));
  const err = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof RemoteKernelError);
      return e.remote;
    }
    assert.fail("expected a failure");
  };
  const podClash = await err(w.k.call("wirePod", wiring(w.a, "wf00000000bbb", 2)));
  assert.equal(podClash.name, "NetlinkError");
  assert.equal(podClash.code, "EEXIST");
  assert.match(podClash.message, new RegExp(`^interface eth0 already exists in ${w.a.path}: File exists`));
  assert.match(podClash.stderr ?? "", /File exists/, "the agent's AlreadyExists check reads stderr");

  const hostClash = await err(w.k.call("wirePod", { ...wiring(w.b, "wf00000000aaa", 2) }));
  assert.match(hostClash.message, /^host interface wf00000000aaa already exists/);
  assert.equal(await w.k.call("linkExistsIn", w.b.path, "eth0"), false, "nothing made in the other pod");

  const gone = await err(w.k.call("wirePod", { ...wiring(w.b, "wf00000000ccc", 2), netns: "/run/netns/wt-gone-0000" }));
  assert.match(gone.message, /^network namespace \/run\/netns\/wt-gone-0000 does not exist/);
  assert.deepEqual(await weftLinks(w.host), ["wf00000000aaa"], "no host end left behind");

  const bad = await err(w.k.call("wirePod", { ...wiring(w.b, "wf00000000ccc", 2), hostIf: "wf x" }));
  assert.equal(bad.name, "InvalidKernelInput");
  const badRoute = await err(
    w.k.call("wirePod", { ...wiring(w.b, "wf00000000ccc", 2), extraRoutes: [{ dst: "10.99.0.1/16", family: 4 }] }),
  );
  assert.match(
    badRoute.message,
    /^cannot add route 10\.99\.0\.1\/16 via 169\.254\.1\.1 dev eth0 in .*: Invalid argument \(EINVAL\)/,
  );

  const lo = await err(w.k.call("deleteHostLinks", ["lo"]));
  assert.match(lo.message, /could not delete lo/);
});

test("deleteHostLinks removes host ends with their pod ends and routes; absent names and repeats are fine; concurrent calls batch", async () => {
  const w = await world("netlink");
  await wireTwo(w);
  await w.k.call("deleteHostLinks", ["wf00000000aaa", "wf00000000bbb", "wf00000000ccc"]);
  assert.deepEqual(await weftLinks(w.host), []);
  assert.equal(await w.k.call("linkExistsIn", w.a.path, "eth0"), false, "the pod end goes with the host end");
  // Answered only once the kernel has also dropped the links' routes.
  assert.deepEqual(
    (await w.k.call<RouteInfo[]>("hostRoutes")).filter(
      (r) => /^(10\.80\.|fd80:)/.test(r.dst) || r.dev.startsWith("wf"),
    ),
    [],
  );
  await w.k.call("deleteHostLinks", ["wf00000000aaa"]);

  // Eight pods deleted at once (the kernel gets one group deletion), plus lo, which cannot go:
  // it fails alone, the others are deleted anyway.
  const pods = await Promise.all(Array.from({ length: 8 }, () => createNetns("pod")));
  const ws = pods.map((p, i) => wiring(p, `wf0000000010${i}`, 10 + i, false));
  for (const x of ws) await w.k.call("wirePod", x);
  const results = await Promise.allSettled([
    ...ws.map((x) => w.k.call("deleteHostLinks", [x.hostIf])),
    w.k.call("deleteHostLinks", ["lo"]),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    [...ws.map(() => "fulfilled"), "rejected"],
  );
  assert.deepEqual(await weftLinks(w.host), []);
  for (const p of pods) assert.equal(await w.k.call("linkExistsIn", p.path, "eth0"), false);
  const lo = JSON.parse(await w.host.exec(["ip", "-j", "-d", "link", "show", "lo"])) as { group: string }[];
  assert.equal(lo[0].group, "default", "lo's group mark is undone");
});
