// The two PodKernels side by side: NetlinkKernel must leave exactly the kernel state IprouteKernel
// leaves for the same input, and answer reads the same way. Each kernel runs in a child process
// inside its own test "host" namespace (as the agent does); the test reads the result the way a
// person would, with `ip -j`. (What each must do on its own is the case suite, cases.ts.)
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { removeAllNetns, type TestNetns } from "../../testlib/netns.js";
import type { PodView, RouteInfo } from "./types.js";
import { type KernelWorld, kernelWorlds, wireTwo, wiring } from "./cases.js";

after(removeAllNetns);
const world = kernelWorlds();

/** `ip -j` output without what differs between two equal setups (ifindex numbers, netns ids, timers). */
function normalize(x: unknown): unknown {
  const drop = new Set([
    "ifindex",
    "link_index",
    "link_netnsid",
    "tentative",
    "used",
    "confirmed",
    "updated",
    "probes",
  ]);
  if (Array.isArray(x)) return x.map(normalize);
  if (x && typeof x === "object") {
    return Object.fromEntries(
      Object.entries(x)
        .filter(([k]) => !drop.has(k))
        .map(([k, v]) => [k, normalize(v)]),
    );
  }
  return x;
}

async function ipj(ns: TestNetns, args: string[]): Promise<unknown> {
  const out = await ns.exec(["ip", "-j", ...args]);
  return normalize(out.trim() ? JSON.parse(out) : []);
}

/**
 * Waits for the kernel's link watcher, which sets a new veth's operational state a moment after
 * carrier comes on: IprouteKernel's ADD can return before that (reading right after it can still
 * show NO-CARRIER). NetlinkKernel's cannot; concurrency.test.ts checks that.
 */
async function settled(ns: TestNetns): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (!(await ns.exec(["ip", "-br", "link", "show"])).includes("NO-CARRIER")) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Everything a person would look at after wiring, in the host and both pods. */
async function snapshot(w: KernelWorld): Promise<Record<string, unknown>> {
  const s: Record<string, unknown> = {};
  for (const ns of [w.host, w.a, w.b]) await settled(ns);
  for (const [name, ns] of [
    ["host", w.host],
    ["a", w.a],
    ["b", w.b],
  ] as const) {
    s[`${name} link`] = await ipj(ns, ["-d", "link", "show"]);
    s[`${name} addr`] = await ipj(ns, ["addr", "show"]);
    s[`${name} route4`] = await ipj(ns, ["-4", "route", "show", "table", "all"]);
    s[`${name} route6`] = await ipj(ns, ["-6", "route", "show", "table", "all"]);
    // The kernel lists neighbours in hash order.
    s[`${name} neigh`] = ((await ipj(ns, ["neigh", "show", "nud", "permanent"])) as unknown[])
      .map((x) => JSON.stringify(x))
      .sort();
  }
  const sysctl = (ns: TestNetns, p: string) => ns.exec(["cat", `/proc/sys/net/${p}`]).then((x) => x.trim());
  for (const p of [
    "ipv4/ip_forward",
    "ipv6/conf/all/forwarding",
    "ipv4/conf/wf00000000aaa/proxy_arp",
    "ipv4/conf/wf00000000bbb/proxy_arp",
  ]) {
    s[`host ${p}`] = await sysctl(w.host, p);
  }
  return s;
}

test("wirePod leaves exactly the kernel state IprouteKernel leaves for the same input (links, MACs, MTU, addresses, routes, neighbours, sysctls)", async () => {
  const ip = await world("iproute");
  const nl = await world("netlink");
  await wireTwo(ip);
  await wireTwo(nl);
  const [want, got] = [await snapshot(ip), await snapshot(nl)];
  for (const key of Object.keys(want)) assert.deepEqual(got[key], want[key], key);
  // And it is the state weft means: spot checks against the input.
  const a = (
    got["a addr"] as {
      ifname: string;
      mtu: number;
      address: string;
      addr_info: { local: string; prefixlen: number; scope: string }[];
    }[]
  ).find((l) => l.ifname === "eth0")!;
  assert.equal(a.mtu, 1400);
  assert.equal(a.address, "02:00:00:bb:00:01");
  assert.deepEqual(
    a.addr_info
      .filter((x) => x.scope === "global")
      .map((x) => `${x.local}/${x.prefixlen}`)
      .sort(),
    ["10.80.0.2/32", "fd80::2/128"],
  );
  assert.equal(got["host ipv4/conf/wf00000000aaa/proxy_arp"], "1");
});

test("single-stack pods (IPv4 only, IPv6 only) also match IprouteKernel exactly", async () => {
  const ip = await world("iproute");
  const nl = await world("netlink");
  for (const w of [ip, nl]) {
    const a = wiring(w.a, "wf00000000aaa", 1);
    const b = wiring(w.b, "wf00000000bbb", 2);
    assert.deepEqual(
      await w.k.call("wirePod", {
        ...a,
        addresses: a.addresses.filter((x) => x.family === 4),
        extraRoutes: a.extraRoutes.filter((x) => x.family === 4),
      }),
      { defaultRoutes: [4] },
    );
    assert.deepEqual(
      await w.k.call("wirePod", {
        ...b,
        addresses: b.addresses.filter((x) => x.family === 6),
        extraRoutes: b.extraRoutes.filter((x) => x.family === 6),
      }),
      { defaultRoutes: [6] },
    );
  }
  const [want, got] = [await snapshot(ip), await snapshot(nl)];
  for (const key of Object.keys(want)) assert.deepEqual(got[key], want[key], key);
});

test("inspectPod, hostLinks, hostRoutes and underlayMtu answer what IprouteKernel answers", async () => {
  const ip = await world("iproute");
  const nl = await world("netlink");
  await wireTwo(ip);
  await wireTwo(nl);
  const sortView = (v: PodView | null) =>
    v && { ...v, link: { ...v.link, ifindex: 0 }, addresses: [...v.addresses].sort(), routes: sortRoutes(v.routes) };
  const sortRoutes = (r: RouteInfo[]) => [...r].sort((x, y) => `${x.dst} ${x.dev}`.localeCompare(`${y.dst} ${y.dev}`));
  const view = sortView(await nl.k.call<PodView>("inspectPod", nl.a.path, "eth0"));
  assert.deepEqual(view, sortView(await ip.k.call<PodView>("inspectPod", ip.a.path, "eth0")));
  assert.ok(view?.routes.some((r) => r.dst === "::/0" && r.gateway === "fe80::1"));
  assert.ok(view?.routes.some((r) => r.dst === "fd99::/64" && r.gateway === "fe80::1"));
  assert.equal(await nl.k.call("inspectPod", nl.a.path, "eth9"), null, "no such interface");
  assert.equal(await nl.k.call("inspectPod", "/run/netns/wt-gone-0000", "eth0"), null, "no such namespace");
  assert.equal(await nl.k.call("linkExistsIn", nl.a.path, "eth0"), true);
  assert.equal(await nl.k.call("linkExistsIn", nl.a.path, "eth9"), false);
  assert.equal(await nl.k.call("linkExistsIn", "/run/netns/wt-gone-0000", "eth0"), false);

  const links = (x: { ifindex: number }[]) => x.map((l) => ({ ...l, ifindex: 0 }));
  assert.deepEqual(links(await nl.k.call("hostLinks")), links(await ip.k.call("hostLinks")));
  const routes = sortRoutes(await nl.k.call<RouteInfo[]>("hostRoutes"));
  assert.deepEqual(routes, sortRoutes(await ip.k.call<RouteInfo[]>("hostRoutes")));
  assert.ok(routes.some((r) => r.dst === "fd80::3/128" && r.dev === "wf00000000bbb"));
  assert.equal(await nl.k.call("underlayMtu"), await ip.k.call("underlayMtu"));

  await nl.k.call("deleteHostRoute", { dst: "10.80.0.3/32", dev: "wf00000000bbb" });
  assert.equal(
    (await nl.k.call<RouteInfo[]>("hostRoutes")).some((r) => r.dst === "10.80.0.3/32"),
    false,
  );
  await assert.rejects(nl.k.call("deleteHostRoute", { dst: "10.80.0.3/32", dev: "wf00000000bbb" }), /No such process/);
});
