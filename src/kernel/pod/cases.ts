// The PodKernel case suite: what every implementation must do, run against each one from its own
// folder (netlink/kernel.test.ts, iproute/kernel.test.ts), as src/store/cases.ts is for the stores.
// Each kernel runs in a child process inside a test "host" namespace (as the agent does); results
// are read the way a person would, with `ip -j` and ping. What only one implementation does (its
// errors, its batching) stays in that implementation's test file; parity.test.ts compares the two.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createNetns, globalAddrs, linkAddr, ping, routes, type TestNetns, weftLinks } from "../../testlib/netns.js";
import { type KernelHost, type KernelImpl, startKernelHost } from "../../testlib/kernel-host.js";
import type { PodWiring } from "./types.js";

const hex = (n: number) => n.toString(16).padStart(2, "0");
/** Pod n's wiring: 10.80.0.(n+1)/32 and fd80::(n+1)/128, with extra routes unless `extra` is false. */
export const wiring = (pod: TestNetns, hostIf: string, n: number, extra = true): PodWiring => ({
  hostIf,
  hostMac: `02:00:00:aa:00:${hex(n)}`,
  podIf: "eth0",
  podMac: `02:00:00:bb:00:${hex(n)}`,
  netns: pod.path,
  mtu: 1400,
  addresses: [
    { family: 4, address: `10.80.0.${n + 1}`, prefix: 32 },
    { family: 6, address: `fd80::${n + 1}`, prefix: 128 },
  ],
  extraRoutes: extra
    ? [
        { dst: "10.99.0.0/16", family: 4 },
        { dst: "fd99::/64", family: 6 },
      ]
    : [],
});

/** Two pods and a kernel host (a child process in its own test "host" namespace, as the agent). */
export interface KernelWorld {
  impl: KernelImpl;
  host: TestNetns;
  k: KernelHost;
  a: TestNetns;
  b: TestNetns;
}

/** For one test file: makes worlds, and closes their kernel hosts after the file. */
export function kernelWorlds(): (impl: KernelImpl) => Promise<KernelWorld> {
  const hosts: KernelHost[] = [];
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
  });
  return async (impl) => {
    const host = await createNetns("host");
    const [a, b] = await Promise.all([createNetns("pod"), createNetns("pod")]);
    const k = startKernelHost(host, impl);
    hosts.push(k);
    await k.call("enableForwarding");
    return { impl, host, k, a, b };
  };
}

/** Pod a with extra routes, pod b without; both get their default routes. */
export async function wireTwo(w: KernelWorld): Promise<void> {
  assert.deepEqual(await w.k.call("wirePod", wiring(w.a, "wf00000000aaa", 1)), { defaultRoutes: [4, 6] });
  assert.deepEqual(await w.k.call("wirePod", wiring(w.b, "wf00000000bbb", 2, false)), { defaultRoutes: [4, 6] });
}

export function podKernelCases(impl: KernelImpl): void {
  const hosts: KernelHost[] = [];
  after(async () => {
    await Promise.all(hosts.map((h) => h.close()));
  });
  const kernelIn = (host: TestNetns): KernelHost => {
    const k = startKernelHost(host, impl);
    hosts.push(k);
    return k;
  };

  test(`${impl}: wirePod makes a routed veth pair; inspectPod reads it back; deleteHostLinks removes it and is idempotent`, async () => {
    const host = await createNetns("host");
    const a = await createNetns("pod");
    const b = await createNetns("pod");
    const k = kernelIn(host);
    await k.call("enableForwarding");
    await k.call("wirePod", { ...wiring(a, "wf00000000aaa", 1), extraRoutes: [{ dst: "10.99.0.0/16", family: 4 }] });
    await k.call("wirePod", { ...wiring(b, "wf00000000bbb", 2), extraRoutes: [{ dst: "10.99.0.0/16", family: 4 }] });

    const l = await linkAddr(a, "eth0");
    assert.equal(l?.mtu, 1400);
    assert.equal(l?.address, "02:00:00:bb:00:01");
    assert.deepEqual(await globalAddrs(a, "eth0"), ["10.80.0.2/32", "fd80::2/128"]);
    assert.ok((await routes(a, 4)).some((r) => r.dst === "10.99.0.0/16" && r.gateway === "169.254.1.1"));
    assert.ok((await routes(host, 4)).some((r) => r.dst === "10.80.0.2" && r.dev === "wf00000000aaa"));
    assert.ok(await ping(a, "10.80.0.3"));
    assert.ok(await ping(b, "fd80::2"));

    const view = await k.call<{
      link: { mtu: number; up: boolean };
      addresses: string[];
      routes: { dst: string; gateway?: string }[];
    } | null>("inspectPod", a.path, "eth0");
    assert.ok(view);
    assert.deepEqual(view.addresses.sort(), ["10.80.0.2/32", "fd80::2/128"]);
    assert.ok(view.routes.some((r) => r.dst === "0.0.0.0/0" && r.gateway === "169.254.1.1"));
    assert.ok(view.routes.some((r) => r.dst === "::/0" && r.gateway === "fe80::1"));
    assert.equal(await k.call("inspectPod", a.path, "eth9"), null);

    const hostRoutes = await k.call<{ dst: string; dev: string }[]>("hostRoutes");
    assert.ok(hostRoutes.some((r) => r.dst === "fd80::3/128" && r.dev === "wf00000000bbb"));

    await k.call("deleteHostLinks", ["wf00000000aaa", "wf00000000bbb", "wf00000000ccc"]);
    assert.deepEqual(await weftLinks(host), []);
    assert.equal(await linkAddr(a, "eth0"), null, "the pod end goes with the host end");
    await k.call("deleteHostLinks", ["wf00000000aaa"]);
  });

  test(`${impl}: wired pods reach each other through the host over IPv4 and IPv6`, async () => {
    const host = await createNetns("host");
    const [a, b] = await Promise.all([createNetns("pod"), createNetns("pod")]);
    const k = kernelIn(host);
    await k.call("enableForwarding");
    assert.deepEqual(await k.call("wirePod", wiring(a, "wf00000000aaa", 1)), { defaultRoutes: [4, 6] });
    assert.deepEqual(await k.call("wirePod", wiring(b, "wf00000000bbb", 2, false)), { defaultRoutes: [4, 6] });
    assert.ok(await ping(a, "10.80.0.3"), "a -> b over IPv4");
    assert.ok(await ping(b, "10.80.0.2"), "b -> a over IPv4");
    assert.ok(await ping(a, "fd80::3"), "a -> b over IPv6");
    assert.ok(await ping(b, "fd80::2"), "b -> a over IPv6");
  });

  test(`${impl}: underlayMtu: the default route's device, else the largest other link, else 1500`, async () => {
    const host = await createNetns("host");
    const peer = await createNetns("peer");
    const k = kernelIn(host);
    assert.equal(await k.call("underlayMtu"), 1500, "only loopback");
    await host.exec([
      "ip",
      "link",
      "add",
      "big0",
      "mtu",
      "9000",
      "type",
      "veth",
      "peer",
      "name",
      "p0",
      "netns",
      peer.path,
    ]);
    await host.exec([
      "ip",
      "link",
      "add",
      "wf00000000ddd",
      "mtu",
      "9100",
      "type",
      "veth",
      "peer",
      "name",
      "p1",
      "netns",
      peer.path,
    ]);
    assert.equal(await k.call("underlayMtu"), 9000, "largest non-weft link");
    await host.exec([
      "ip",
      "link",
      "add",
      "up0",
      "mtu",
      "1450",
      "type",
      "veth",
      "peer",
      "name",
      "p2",
      "netns",
      peer.path,
    ]);
    await host.exec(["ip", "link", "set", "up0", "up"]);
    await host.exec(["ip", "addr", "add", "192.0.2.1/24", "dev", "up0"]);
    await host.exec(["ip", "route", "add", "default", "via", "192.0.2.2"]);
    assert.equal(await k.call("underlayMtu"), 1450, "default route's device");
  });

  test(`${impl}: a pod's second interface leaves the existing default routes alone`, async () => {
    const host = await createNetns("host");
    const a = await createNetns("pod");
    const k = kernelIn(host);
    await k.call("enableForwarding");
    await k.call("wirePod", wiring(a, "wf00000000aaa", 1));
    const second = { ...wiring(a, "wf00000000abb", 3, false), podIf: "net1" };
    assert.deepEqual(await k.call("wirePod", second), { defaultRoutes: [] }, impl);
    const r4 = JSON.parse(await a.exec(["ip", "-j", "-4", "route", "show", "default"])) as { dev: string }[];
    assert.deepEqual(
      r4.map((r) => r.dev),
      ["eth0"],
      impl,
    );
  });
}
