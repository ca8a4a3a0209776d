// NetlinkKernel under the load the agent puts on it: a hundred pods wired while links are
// deleted one by one and in big batches (what a DEL burst or a restart's clean-up sends), and
// pods used the moment their ADD returns. The kernel runs in a child process inside a test
// "host" namespace, as the agent does; results are read with `ip -j` and ping.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createNetns, ping, removeAllNetns, type TestNetns, weftLinks } from "../../../testlib/netns.js";
import type { PodWiring } from "../types.js";
import { type KernelHost, startKernelHost } from "../../../testlib/kernel-host.js";

after(removeAllNetns);
const hosts: KernelHost[] = [];
after(async () => {
  await Promise.all(hosts.map((h) => h.close()));
});

const PODS = 100; // even: the last pod is an odd one
const hex = (n: number, w: number) => n.toString(16).padStart(w, "0");

/** Pod i's interface `podIf` (set s of 0-2): distinct host names, MACs and addresses per set. */
function wiring(pod: TestNetns, i: number, podIf: string, s: number): PodWiring {
  return {
    hostIf: `wf${hex(s, 7)}${hex(i, 4)}`,
    hostMac: `02:a${s}:00:00:${hex(i >> 8, 2)}:${hex(i & 255, 2)}`,
    podIf,
    podMac: `02:b${s}:00:00:${hex(i >> 8, 2)}:${hex(i & 255, 2)}`,
    netns: pod.path,
    mtu: 1400,
    addresses: [
      { family: 4, address: `10.8${s}.${i >> 8}.${(i & 255) + 1}`, prefix: 32 },
      { family: 6, address: `fd8${s}::${hex(i + 1, 4)}`, prefix: 128 },
    ],
    extraRoutes: [],
  };
}

async function world(): Promise<{ host: TestNetns; k: KernelHost; pods: TestNetns[] }> {
  const host = await createNetns("host");
  const pods: TestNetns[] = [];
  for (let i = 0; i < PODS; i += 25)
    pods.push(...(await Promise.all(Array.from({ length: Math.min(25, PODS - i) }, () => createNetns("pod")))));
  const k = startKernelHost(host, "netlink");
  hosts.push(k);
  await k.call("enableForwarding");
  return { host, k, pods };
}

/** Every call's outcome; the rejections' messages, for a readable assertion. */
async function settle(calls: Promise<unknown>[]): Promise<string[]> {
  const r = await Promise.allSettled(calls);
  return r.flatMap((x) => (x.status === "rejected" ? [String((x.reason as Error).message)] : []));
}

async function podLinks(pod: TestNetns): Promise<string[]> {
  const links = JSON.parse(await pod.exec(["ip", "-j", "link", "show"])) as { ifname: string }[];
  return links
    .map((l) => l.ifname)
    .filter((n) => n !== "lo")
    .sort();
}

test(`${PODS} concurrent ADDs, single and batched deletions all succeed and leave nothing behind`, async () => {
  const { host, k, pods } = await world();
  const eth0 = pods.map((p, i) => wiring(p, i, "eth0", 0));
  const net1 = pods.map((p, i) => wiring(p, i, "net1", 1));

  // Every pod wired at once; every other one deleted as soon as it is up (DELs among ADDs).
  assert.deepEqual(
    await settle(
      eth0.map(async (w, i) => {
        await k.call("wirePod", w);
        if (i % 2) await k.call("deleteHostLinks", [w.hostIf]);
      }),
    ),
    [],
  );
  assert.deepEqual(
    await weftLinks(host),
    eth0
      .filter((_, i) => i % 2 === 0)
      .map((w) => w.hostIf)
      .sort(),
  );

  // A restart's clean-up: all remaining host ends in one call (one big batch for the kernel),
  // while a second interface is wired into every pod and the host's links are listed.
  assert.deepEqual(
    await settle([
      k.call(
        "deleteHostLinks",
        eth0.map((w) => w.hostIf),
      ),
      ...net1.map((w) => k.call("wirePod", w)),
      k.call("hostLinks"),
      k.call("hostRoutes"),
    ]),
    [],
  );
  assert.deepEqual(await weftLinks(host), net1.map((w) => w.hostIf).sort());
  for (const p of pods)
    assert.deepEqual(await podLinks(p), ["net1"], `${p.name}: the eth0 pod ends went with their host ends`);

  // And the pods work, both ways, both families: two whose eth0 was gone before net1 came, so
  // net1 has their default routes (an even pod's eth0 may still have held them).
  const [p1, p2] = [1, PODS - 1];
  assert.ok(await ping(pods[p1], net1[p2].addresses[0].address), `pod ${p1} -> pod ${p2} over IPv4`);
  assert.ok(await ping(pods[p2], net1[p1].addresses[1].address), `pod ${p2} -> pod ${p1} over IPv6`);

  // Everything deleted at once, each pod by its own call.
  assert.deepEqual(await settle(net1.map((w) => k.call("deleteHostLinks", [w.hostIf]))), []);
  assert.deepEqual(await weftLinks(host), []);
  const left = JSON.parse(await host.exec(["ip", "-j", "route", "show"])) as { dst: string }[];
  assert.deepEqual(
    left.filter((r) => r.dst.startsWith("10.8")),
    [],
    "no pod routes left in the host",
  );
});

test("a pod passes traffic the moment wirePod returns: both veth ends are operationally up", async () => {
  const { k, pods } = await world();
  const ws = pods.map((p, i) => wiring(p, i, "eth0", 2));
  // Back to back, as the agent wires a burst; each end's state is read (a link dump, as
  // `ip link show` does) the instant its ADD returns.
  const seen = await Promise.all(ws.map((w) => k.call<{ host: string; pod: string }>("wirePodLooked", w)));
  const notUp = seen.flatMap((s, i) =>
    s.host === "UP" && s.pod === "UP" ? [] : [`${ws[i].hostIf}: host end ${s.host}, pod end ${s.pod}`],
  );
  assert.deepEqual(notUp, [], "veth ends not up when their ADD returned");

  // And what that means for a user: a pod wired now, then a single packet each way at once
  // (a lost first packet fails the ping).
  const extra = await createNetns("pod");
  const w = wiring(extra, PODS, "eth0", 2);
  await k.call("wirePod", w);
  assert.ok(await ping(extra, ws[0].addresses[0].address, 1), "the first packet from a just-wired pod is answered");
  assert.ok(await ping(pods[1], w.addresses[1].address, 1), "the first packet to a just-wired pod (IPv6) is answered");
});
