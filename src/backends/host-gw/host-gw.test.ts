import assert from "node:assert/strict";
import { test } from "node:test";
import { run } from "../../kernel/exec.js";
import { backendSuite, podAddr, startCluster, withTopology } from "../testing/suite.js";
import { ping, reaches } from "../testing/topology.js";
import { HostGwBackend } from "./backend.js";

backendSuite({ title: "host-gw", create: (o) => new HostGwBackend(o), podMtu: 1500 });

test("host-gw: routes each peer's pod subnets via its underlay address on the underlay interface", () =>
  withTopology({ subnets: [0, 0], podFamilies: [4, 6] }, async (topo) => {
    const c = await startCluster(topo, (o) => new HostGwBackend(o));
    await c.syncAll();
    const [a, b] = topo.nodes;
    const r4 = JSON.parse(await run(["ip", "-j", "route", "show", "10.244.2.0/24"], { netns: a.netns }))[0];
    assert.deepEqual([r4.gateway, r4.dev], [b.underlay.ipv4, "eth0"]);
    const r6 = JSON.parse(await run(["ip", "-j", "-6", "route", "show", "fd00:244:2::/64"], { netns: a.netns }))[0];
    assert.deepEqual([r6.gateway, r6.dev], [b.underlay.ipv6, "eth0"]);
  }));

test("host-gw: a peer behind a router is refused with a message naming its address and this node's subnet", () =>
  withTopology({ subnets: [0, 0, 1], podFamilies: [4, 6] }, async (topo) => {
    const [a, b, far] = topo.nodes;
    const c = await startCluster(topo, (o) => new HostGwBackend(o));
    const [r] = await c.syncAll();
    const near = r.peers.find((p) => p.name === b.name);
    const bad = r.peers.find((p) => p.name === far.name);
    assert.equal(near?.ok, true);
    assert.equal(bad?.ok, false);
    assert.equal(bad?.errors.length, 2, "one message per pod family");
    assert.match(
      bad?.errors[0] ?? "",
      new RegExp(
        `underlay address ${far.underlay.ipv4.replace(/\./g, "\\.")} is not on this node's subnet \\(10\\.200\\.0\\.0/24 on eth0\\)`,
      ),
    );
    assert.match(bad?.errors.join("\n") ?? "", /vxlan-direct/);
    assert.deepEqual(bad?.paths, {});
    const routes = JSON.parse(await run(["ip", "-j", "route", "show", "10.244.3.0/24"], { netns: a.netns }));
    assert.deepEqual(routes, [], "no route for the refused peer");
    assert.ok(await reaches(a.pod.netns, podAddr(b, 4)));
    assert.ok(await reaches(a.pod.netns, podAddr(b, 6)));
    // The router forwards underlay traffic, but pod subnets are unknown there: no path.
    assert.equal(await ping(a.pod.netns, podAddr(far, 4), 1), false);
  }));
