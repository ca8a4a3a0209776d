// IprouteKernel against the real kernel, in namespaces the test makes. The test process itself
// stays in the machine's namespace, so the "host" side runs through a child process inside the
// test host namespace: node -e with the compiled module.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "./exec.js";
import { createNetns, globalAddrs, linkAddr, ping, removeAllNetns, routes, type TestNetns, weftLinks } from "../testlib/netns.js";
import * as validate from "./validate.js";
import { parseBatchFailures } from "./iproute.js";

after(removeAllNetns);

const MODULE = join(dirname(fileURLToPath(import.meta.url)), "iproute.js");

/** Calls one IprouteKernel method inside `host` and returns its JSON result. */
async function inHost<T>(host: TestNetns, method: string, ...args: unknown[]): Promise<T> {
  const script = `const { IprouteKernel } = await import(${JSON.stringify(MODULE)});
    const r = await new IprouteKernel()[${JSON.stringify(method)}](...${JSON.stringify(args)}, (n) => /^wf/.test(n));
    process.stdout.write(JSON.stringify(r ?? null));`;
  const out = await run([process.execPath, "--input-type=module", "-e", script], { netns: host.path });
  return JSON.parse(out) as T;
}

const wiring = (pod: TestNetns, hostIf: string, v4: string, v6: string) => ({
  hostIf, hostMac: "02:00:00:aa:00:01", podIf: "eth0", podMac: "02:00:00:bb:00:01", netns: pod.path, mtu: 1400,
  addresses: [{ family: 4, address: v4, prefix: 32 }, { family: 6, address: v6, prefix: 128 }],
  extraRoutes: [{ dst: "10.99.0.0/16", family: 4 }],
});

test("wirePod makes a routed veth pair; inspectPod reads it back; deleteHostLinks removes it and is idempotent", async () => {
  const host = await createNetns("host");
  const a = await createNetns("pod");
  const b = await createNetns("pod");
  await inHost(host, "enableForwarding");
  await inHost(host, "wirePod", wiring(a, "wf00000000aaa", "10.80.0.2", "fd80::2"));
  await inHost(host, "wirePod", { ...wiring(b, "wf00000000bbb", "10.80.0.3", "fd80::3"), hostMac: "02:00:00:aa:00:02", podMac: "02:00:00:bb:00:02" });

  const l = await linkAddr(a, "eth0");
  assert.equal(l?.mtu, 1400);
  assert.equal(l?.address, "02:00:00:bb:00:01");
  assert.deepEqual(await globalAddrs(a, "eth0"), ["10.80.0.2/32", "fd80::2/128"]);
  assert.ok((await routes(a, 4)).some((r) => r.dst === "10.99.0.0/16" && r.gateway === "169.254.1.1"));
  assert.ok((await routes(host, 4)).some((r) => r.dst === "10.80.0.2" && r.dev === "wf00000000aaa"));
  assert.ok(await ping(a, "10.80.0.3"));
  assert.ok(await ping(b, "fd80::2"));

  const view = await inHost<{ link: { mtu: number; up: boolean }; addresses: string[]; routes: { dst: string; gateway?: string }[] } | null>(host, "inspectPod", a.path, "eth0");
  assert.ok(view);
  assert.deepEqual(view.addresses.sort(), ["10.80.0.2/32", "fd80::2/128"]);
  assert.ok(view.routes.some((r) => r.dst === "0.0.0.0/0" && r.gateway === "169.254.1.1"));
  assert.ok(view.routes.some((r) => r.dst === "::/0" && r.gateway === "fe80::1"));
  assert.equal(await inHost(host, "inspectPod", a.path, "eth9"), null);

  const hostRoutes = await inHost<{ dst: string; dev: string }[]>(host, "hostRoutes");
  assert.ok(hostRoutes.some((r) => r.dst === "fd80::3/128" && r.dev === "wf00000000bbb"));

  await inHost(host, "deleteHostLinks", ["wf00000000aaa", "wf00000000bbb", "wf00000000ccc"]);
  assert.deepEqual(await weftLinks(host), []);
  assert.equal(await linkAddr(a, "eth0"), null, "the pod end goes with the host end");
  await inHost(host, "deleteHostLinks", ["wf00000000aaa"]);
});

test("underlayMtu: the default route's device, else the largest other link, else 1500", async () => {
  const host = await createNetns("host");
  const peer = await createNetns("peer");
  assert.equal(await inHost(host, "underlayMtu"), 1500, "only loopback");
  await host.exec(["ip", "link", "add", "big0", "mtu", "9000", "type", "veth", "peer", "name", "p0", "netns", peer.path]);
  await host.exec(["ip", "link", "add", "wf00000000ddd", "mtu", "9100", "type", "veth", "peer", "name", "p1", "netns", peer.path]);
  assert.equal(await inHost(host, "underlayMtu"), 9000, "largest non-weft link");
  await host.exec(["ip", "link", "add", "up0", "mtu", "1450", "type", "veth", "peer", "name", "p2", "netns", peer.path]);
  await host.exec(["ip", "link", "set", "up0", "up"]);
  await host.exec(["ip", "addr", "add", "192.0.2.1/24", "dev", "up0"]);
  await host.exec(["ip", "route", "add", "default", "via", "192.0.2.2"]);
  assert.equal(await inHost(host, "underlayMtu"), 1450, "default route's device");
});

test("names and paths that could change an ip -batch line are rejected", () => {
  assert.throws(() => validate.netnsPath("/run/netns/x\nlink del lo"), /whitespace/);
  assert.throws(() => validate.netnsPath("/run/netns/a b"), /whitespace/);
  assert.throws(() => validate.netnsPath('/run/netns/"x'), /quotes/);
  assert.throws(() => validate.ifname("eth0\nlink"), /whitespace/);
  assert.throws(() => validate.ifname("eth%d"), /template/);
  assert.equal(validate.netnsPath("/proc/123/ns/net"), "/proc/123/ns/net");
});

test("ip -force -batch failures are attributed to their lines", async () => {
  const ns = await createNetns("b");
  const r = await ns.status(["ip", "-force", "-batch", "-"], {
    input: "route add default dev lo\nroute add default dev lo\nroute add 192.0.2.9 dev nonexist0\naddr add 192.0.2.1/32 dev lo\n",
  });
  assert.notEqual(r.code, 0);
  const f = parseBatchFailures(r.stderr);
  assert.deepEqual(f.map((x) => x.line), [2, 3]);
  assert.match(f[0].message, /File exists/);
  assert.match(f[1].message, /nonexist0/);
  assert.deepEqual(await globalAddrs(ns, "lo"), ["192.0.2.1/32"], "later lines still ran");
});
