// The node agent on a real kernel: the agent runs in a test "host" namespace, each pod is a
// namespace the test makes, and the test talks to the agent over its socket as the plugin does.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { dirname } from "node:path";
import type { Result } from "../cni/types.js";
import type { AgentResponse, IpamCheckReport } from "../agent-api/schema.js";
import { startTestAgent, type TestAgent } from "../testlib/agent.js";
import {
  createNetns,
  globalAddrs,
  linkAddr,
  ping,
  removeAllNetns,
  routes,
  type TestNetns,
  weftLinks,
} from "../testlib/netns.js";

after(removeAllNetns);

let seq = 0;
const cid = () => `c${process.pid}x${++seq}`;

function ok(r: AgentResponse): Result | undefined {
  if (!r.ok) assert.fail(`agent said ${r.code}: ${r.msg}`);
  return r.result;
}

async function addPod(agent: TestAgent, extra: Record<string, unknown> = {}) {
  const ns = await createNetns("pod");
  const containerId = cid();
  const res = await agent.request({
    op: "add",
    network: "weft",
    containerId,
    netns: ns.path,
    ifname: "eth0",
    args: {},
    ...extra,
  });
  return { ns, containerId, res, result: res.ok ? res.result! : undefined };
}

async function ipamCheck(agent: TestAgent, fix = false): Promise<IpamCheckReport> {
  const r = await agent.request({ op: "ipam-check", fix });
  if (!r.ok) assert.fail(r.msg);
  return r.report!;
}

const addrOf = (r: Result, fam: 4 | 6) =>
  r.ips!.map((i) => i.address.split("/")[0]).find((a) => (fam === 6) === a.includes(":"))!;

describe("agent, dual-stack host", () => {
  let host: TestNetns;
  let agent: TestAgent;
  before(async () => {
    host = await createNetns("host");
    agent = await startTestAgent({ netns: host.path, podCidr: "10.66.0.0/24,fd66::/64" });
  });
  after(async () => {
    await agent?.cleanup();
  });

  test("the socket is 0600 in a 0700 directory", () => {
    assert.equal(statSync(agent.socket).mode & 0o777, 0o600);
    assert.equal(statSync(dirname(agent.socket)).mode & 0o777, 0o700);
  });

  test("status is ok", async () => {
    ok(await agent.request({ op: "status", network: "weft" }));
  });

  test("ADD wires a pod: /32 and /128 addresses, default routes via the link-local gateways, host routes", async () => {
    const { ns, result } = await addPod(agent);
    assert.ok(result, "ADD failed");
    assert.equal(result.cniVersion, "1.1.0");
    const [hostIf, podIf] = result.interfaces!;
    assert.match(hostIf.name, /^wf[0-9a-f]{11}$/);
    assert.equal(hostIf.sandbox, undefined);
    assert.equal(podIf.name, "eth0");
    assert.equal(podIf.sandbox, ns.path);
    const v4 = addrOf(result, 4);
    const v6 = addrOf(result, 6);
    assert.deepEqual(
      result.ips!.map((i) => i.interface),
      [1, 1],
    );
    assert.deepEqual(result.routes, [
      { dst: "0.0.0.0/0", gw: "169.254.1.1" },
      { dst: "::/0", gw: "fe80::1" },
    ]);

    // What the pod sees.
    const link = await linkAddr(ns, "eth0");
    assert.ok(link);
    assert.equal(link.address, podIf.mac);
    assert.equal(link.mtu, podIf.mtu);
    assert.ok(link.flags.includes("UP"));
    assert.deepEqual(await globalAddrs(ns, "eth0"), [`${v4}/32`, `${v6}/128`].sort());
    assert.ok(
      (await routes(ns, 4)).some((r) => r.dst === "default" && r.gateway === "169.254.1.1" && r.dev === "eth0"),
    );
    assert.ok((await routes(ns, 6)).some((r) => r.dst === "default" && r.gateway === "fe80::1" && r.dev === "eth0"));
    // What the host sees.
    assert.ok((await routes(host, 4)).some((r) => r.dst === v4 && r.dev === hostIf.name));
    assert.ok((await routes(host, 6)).some((r) => r.dst === v6 && r.dev === hostIf.name));
    assert.equal((await host.exec(["cat", `/proc/sys/net/ipv4/conf/${hostIf.name}/proxy_arp`])).trim(), "1");
    assert.equal((await host.exec(["cat", "/proc/sys/net/ipv4/ip_forward"])).trim(), "1");
    assert.equal((await host.exec(["cat", "/proc/sys/net/ipv6/conf/all/forwarding"])).trim(), "1");
    const check = await ipamCheck(agent);
    assert.deepEqual([check.leaked, check.conflicts], [[], []]);
  });

  test("two pods reach each other across the host over IPv4 and IPv6", async () => {
    const a = await addPod(agent);
    const b = await addPod(agent);
    assert.ok(a.result && b.result);
    assert.ok(await ping(a.ns, addrOf(b.result, 4)), "IPv4 a -> b");
    assert.ok(await ping(b.ns, addrOf(a.result, 4)), "IPv4 b -> a");
    assert.ok(await ping(a.ns, addrOf(b.result, 6)), "IPv6 a -> b");
    assert.ok(await ping(b.ns, addrOf(a.result, 6)), "IPv6 b -> a");
  });

  test("a second ADD of the same container and ifname fails and leaves the first intact", async () => {
    const first = await addPod(agent);
    assert.ok(first.result);
    const before = await linkAddr(first.ns, "eth0");
    const allocs = (await ipamCheck(agent)).allocations;
    const again = await agent.request({
      op: "add",
      network: "weft",
      containerId: first.containerId,
      netns: first.ns.path,
      ifname: "eth0",
      args: {},
    });
    assert.equal(again.ok, false);
    if (!again.ok) assert.match(again.msg, /already has an attachment/);
    const afterLink = await linkAddr(first.ns, "eth0");
    assert.equal(afterLink?.ifindex, before?.ifindex);
    assert.deepEqual(
      await globalAddrs(first.ns, "eth0"),
      before!.addr_info
        .filter((a) => a.scope === "global")
        .map((a) => `${a.local}/${a.prefixlen}`)
        .sort(),
    );
    assert.equal((await ipamCheck(agent)).allocations, allocs);
    const other = await addPod(agent);
    assert.ok(other.result && (await ping(other.ns, addrOf(first.result, 4))), "first pod still reachable");
  });

  test("a second weft interface in a pod keeps the first one's default routes", async () => {
    const first = await addPod(agent);
    assert.ok(first.result);
    const containerId = cid();
    const r = await agent.request({
      op: "add",
      network: "second",
      containerId,
      netns: first.ns.path,
      ifname: "eth1",
      args: {},
    });
    const second = ok(r)!;
    assert.deepEqual(second.routes, [], "no default routes claimed for eth1");
    assert.equal((await globalAddrs(first.ns, "eth1")).length, 2);
    assert.ok((await routes(first.ns, 4)).some((x) => x.dst === "default" && x.dev === "eth0"));
    assert.ok(!(await routes(first.ns, 4)).some((x) => x.dst === "default" && x.dev === "eth1"));
    const peer = await addPod(agent);
    assert.ok(peer.result && (await ping(peer.ns, addrOf(second, 4))), "eth1's address is reachable");
    ok(
      await agent.request({
        op: "check",
        network: "second",
        containerId,
        netns: first.ns.path,
        ifname: "eth1",
        prevResult: second,
      }),
    );
    ok(
      await agent.request({
        op: "check",
        network: "weft",
        containerId: first.containerId,
        netns: first.ns.path,
        ifname: "eth0",
        prevResult: first.result,
      }),
    );
    ok(await agent.request({ op: "del", network: "second", containerId, netns: first.ns.path, ifname: "eth1" }));
    assert.equal(await linkAddr(first.ns, "eth1"), null);
    assert.ok(await ping(peer.ns, addrOf(first.result, 6)), "eth0 is untouched");
  });

  test("ADD into a namespace that already has the interface fails and leaves nothing behind", async () => {
    const ns = await createNetns("pod");
    await ns.exec(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0"]);
    const linksBefore = await weftLinks(host);
    const allocs = (await ipamCheck(agent)).allocations;
    const r = await agent.request({
      op: "add",
      network: "weft",
      containerId: cid(),
      netns: ns.path,
      ifname: "eth0",
      args: {},
    });
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.code, 100);
      assert.match(r.msg, /eth0 already exists/);
    }
    assert.deepEqual(await weftLinks(host), linksBefore);
    assert.equal((await ipamCheck(agent)).allocations, allocs);
    assert.deepEqual(await globalAddrs(ns, "eth0"), []);
  });

  test("an ADD that fails half-way (IPv6 disabled in the pod) is undone completely", async () => {
    const ns = await createNetns("pod");
    await ns.exec(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
    const linksBefore = await weftLinks(host);
    const allocs = (await ipamCheck(agent)).allocations;
    const r = await agent.request({
      op: "add",
      network: "weft",
      containerId: cid(),
      netns: ns.path,
      ifname: "eth0",
      args: {},
    });
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.code, 102, r.msg);
    assert.deepEqual(await weftLinks(host), linksBefore, "host veth removed");
    assert.equal(await linkAddr(ns, "eth0"), null, "pod end removed");
    assert.equal((await ipamCheck(agent)).allocations, allocs, "addresses released");
  });

  test("DEL removes the pod's veth and routes and releases its addresses; a second DEL succeeds", async () => {
    const p = await addPod(agent);
    assert.ok(p.result);
    const hostIf = p.result.interfaces![0].name;
    const allocs = (await ipamCheck(agent)).allocations;
    const del = { op: "del", network: "weft", containerId: p.containerId, netns: p.ns.path, ifname: "eth0" };
    ok(await agent.request(del));
    assert.equal(await linkAddr(p.ns, "eth0"), null);
    assert.ok(!(await weftLinks(host)).includes(hostIf));
    assert.ok(!(await routes(host, 4)).some((r) => r.dst === addrOf(p.result!, 4)));
    assert.equal((await ipamCheck(agent)).allocations, allocs - 2);
    ok(await agent.request(del));
  });

  test("DEL under another network name does not touch the pod", async () => {
    const p = await addPod(agent);
    assert.ok(p.result);
    ok(
      await agent.request({
        op: "del",
        network: "other",
        containerId: p.containerId,
        netns: p.ns.path,
        ifname: "eth0",
      }),
    );
    assert.ok(await linkAddr(p.ns, "eth0"));
    ok(
      await agent.request({
        op: "check",
        network: "weft",
        containerId: p.containerId,
        netns: p.ns.path,
        ifname: "eth0",
        prevResult: p.result,
      }),
    );
  });

  test("DEL succeeds when the pod's namespace is already gone, or never given", async () => {
    const p = await addPod(agent);
    assert.ok(p.result);
    const hostIf = p.result.interfaces![0].name;
    await p.ns.remove();
    ok(
      await agent.request({ op: "del", network: "weft", containerId: p.containerId, netns: p.ns.path, ifname: "eth0" }),
    );
    assert.ok(!(await weftLinks(host)).includes(hostIf));
    const q = await addPod(agent);
    assert.ok(q.result);
    ok(await agent.request({ op: "del", network: "weft", containerId: q.containerId, ifname: "eth0" }));
    const report = await ipamCheck(agent);
    assert.deepEqual([report.leaked, report.conflicts], [[], []]);
  });

  test("CHECK passes on a wired pod and fails with a clear message after an address is removed by hand", async () => {
    const p = await addPod(agent);
    assert.ok(p.result);
    const req = {
      op: "check",
      network: "weft",
      containerId: p.containerId,
      netns: p.ns.path,
      ifname: "eth0",
      prevResult: p.result,
    };
    ok(await agent.request(req));
    const v6 = addrOf(p.result, 6);
    await p.ns.exec(["ip", "addr", "del", `${v6}/128`, "dev", "eth0"]);
    const r = await agent.request(req);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.msg, new RegExp(`address ${v6}/128 is missing on eth0`));
    const unknown = await agent.request({ ...req, containerId: cid() });
    assert.equal(unknown.ok, false);
    if (!unknown.ok) assert.match(unknown.msg, /no allocation/);
  });

  test("GC releases and unwires every attachment of the network not in validAttachments", async () => {
    const keep = await addPod(agent, { network: "gcnet" });
    const drop1 = await addPod(agent, { network: "gcnet" });
    const drop2 = await addPod(agent, { network: "gcnet" });
    const otherNet = await addPod(agent);
    for (const p of [keep, drop1, drop2, otherNet]) assert.ok(p.result);
    ok(
      await agent.request({
        op: "gc",
        network: "gcnet",
        validAttachments: [{ containerID: keep.containerId, ifname: "eth0" }],
      }),
    );
    assert.ok(await linkAddr(keep.ns, "eth0"));
    assert.ok(await linkAddr(otherNet.ns, "eth0"), "other networks are untouched");
    assert.equal(await linkAddr(drop1.ns, "eth0"), null);
    assert.equal(await linkAddr(drop2.ns, "eth0"), null);
    const links = await weftLinks(host);
    assert.ok(!links.includes(drop1.result!.interfaces![0].name));
    // The released addresses are gone from the allocation and nothing is leaked.
    const report = await ipamCheck(agent);
    assert.deepEqual([report.leaked, report.conflicts], [[], []]);
    ok(
      await agent.request({
        op: "check",
        network: "gcnet",
        containerId: keep.containerId,
        netns: keep.ns.path,
        ifname: "eth0",
        prevResult: keep.result!,
      }),
    );
  });

  test("bad input is rejected before anything is made", async () => {
    const ns = await createNetns("pod");
    const linksBefore = await weftLinks(host);
    const allocs = (await ipamCheck(agent)).allocations;
    const base = { op: "add", network: "weft", containerId: cid(), netns: ns.path, ifname: "eth0", args: {} };
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ ...base, ifname: "eth0/../x" }, 4, /ifname/],
      [{ ...base, ifname: "a-name-longer-than-15" }, 4, /longer than 15/],
      [{ ...base, netns: "relative/ns" }, 4, /netns/],
      [{ ...base, netns: "/run/netns/../netns/x" }, 4, /normalized/],
      [{ ...base, netns: "/run/netns/wt-does-not-exist" }, 3, /does not exist/],
      [{ ...base, containerId: "bad id;rm" }, 4, /containerId/],
      [{ ...base, netns: "/etc/hostname" }, 4, /is not a network namespace/],
      [{ ...base, mtu: 20 }, 4, /mtu/],
      [{ op: "nope" }, 4, /invalid request/],
    ];
    for (const [req, code, re] of cases) {
      const r = await agent.request(req);
      assert.equal(r.ok, false, JSON.stringify(req));
      if (!r.ok) {
        assert.equal(r.code, code, `${JSON.stringify(req)}: ${r.msg}`);
        assert.match(r.msg, re);
      }
    }
    assert.deepEqual(await weftLinks(host), linksBefore);
    assert.equal((await ipamCheck(agent)).allocations, allocs);
    assert.deepEqual(
      JSON.parse(await ns.exec(["ip", "-j", "link", "show"])).map((l: { ifname: string }) => l.ifname),
      ["lo"],
    );
  });

  test("delegated IPAM: the given address is used and recorded, and DEL forgets it", async () => {
    const p = await addPod(agent, {
      ipam: {
        ips: [{ address: "10.200.0.7/24", gateway: "10.200.0.1" }],
        routes: [{ dst: "0.0.0.0/0" }, { dst: "10.201.0.0/16" }],
      },
    });
    assert.ok(p.result, JSON.stringify(p.res));
    assert.deepEqual(await globalAddrs(p.ns, "eth0"), ["10.200.0.7/32"]);
    assert.ok((await routes(p.ns, 4)).some((r) => r.dst === "10.201.0.0/16" && r.gateway === "169.254.1.1"));
    const report = await ipamCheck(agent);
    assert.deepEqual(
      [report.leaked, report.conflicts],
      [[], []],
      "a delegated address outside the pod CIDR is not a conflict",
    );
    ok(
      await agent.request({
        op: "check",
        network: "weft",
        containerId: p.containerId,
        netns: p.ns.path,
        ifname: "eth0",
        prevResult: p.result,
        delegatedIpam: true,
      }),
    );
    const before = (await ipamCheck(agent)).allocations;
    ok(
      await agent.request({
        op: "del",
        network: "weft",
        containerId: p.containerId,
        netns: p.ns.path,
        ifname: "eth0",
        delegatedIpam: true,
      }),
    );
    assert.equal((await ipamCheck(agent)).allocations, before - 1);
  });

  test("100 concurrent ADDs get distinct addresses; DEL of all leaves nothing", async () => {
    const nss = await Promise.all(Array.from({ length: 100 }, () => createNetns("pod")));
    const before = await weftLinks(host);
    const ids = nss.map(() => cid());
    const results = await Promise.all(
      nss.map((ns, i) =>
        agent.request({ op: "add", network: "burst", containerId: ids[i], netns: ns.path, ifname: "eth0", args: {} }),
      ),
    );
    const v4 = results.map((r) => addrOf(ok(r)!, 4));
    const v6 = results.map((r) => addrOf(ok(r)!, 6));
    assert.equal(new Set(v4).size, 100);
    assert.equal(new Set(v6).size, 100);
    // What the kernel says, not only the answers.
    const podAddrs = await Promise.all(nss.map((ns) => globalAddrs(ns, "eth0")));
    assert.equal(new Set(podAddrs.flat()).size, 200);
    assert.ok((await ping(nss[0], v4[99])) && (await ping(nss[99], v6[0])));
    await Promise.all(
      nss.map((ns, i) =>
        agent.request({ op: "del", network: "burst", containerId: ids[i], netns: ns.path, ifname: "eth0" }).then(ok),
      ),
    );
    assert.deepEqual(await weftLinks(host), before);
    const report = await ipamCheck(agent);
    assert.deepEqual([report.leaked, report.conflicts], [[], []]);
    await Promise.all(nss.map((ns) => ns.remove()));
  });
});

describe("agent, IPv4 only, small pool", () => {
  test("a full pool makes ADD fail and STATUS report code 50", async () => {
    const host = await createNetns("host");
    const agent = await startTestAgent({ netns: host.path, podCidr: "10.67.0.0/30" });
    try {
      const a = await addPod(agent);
      const b = await addPod(agent);
      assert.deepEqual([a.result && addrOf(a.result, 4), b.result && addrOf(b.result, 4)], ["10.67.0.1", "10.67.0.2"]);
      assert.equal(a.result!.ips!.length, 1);
      const st = await agent.request({ op: "status", network: "weft" });
      assert.equal(st.ok, false);
      if (!st.ok) {
        assert.equal(st.code, 50);
        assert.match(st.msg, /no free address/);
      }
      const c = await addPod(agent);
      assert.equal(c.res.ok, false);
      if (!c.res.ok) assert.match(c.res.msg, /no free address left in 10.67.0.0\/30/);
      assert.equal(await linkAddr(c.ns, "eth0"), null);
      ok(await agent.request({ op: "del", network: "weft", containerId: a.containerId, ifname: "eth0" }));
      ok(await agent.request({ op: "status", network: "weft" }));
    } finally {
      await agent.cleanup();
    }
  });
});

describe("agent MTU", () => {
  test("pod MTU follows the default route's device, --mtu, and the request's mtu", async () => {
    const host = await createNetns("host");
    const peer = await createNetns("up");
    await host.exec([
      "ip",
      "link",
      "add",
      "uplink",
      "mtu",
      "1420",
      "type",
      "veth",
      "peer",
      "name",
      "down",
      "netns",
      peer.path,
    ]);
    await host.exec(["ip", "link", "set", "uplink", "up"]);
    await host.exec(["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink"]);
    await host.exec(["ip", "route", "add", "default", "via", "192.0.2.2"]);
    const first = await startTestAgent({ netns: host.path, podCidr: "10.68.0.0/24" });
    let agent = first;
    try {
      const a = await addPod(agent);
      assert.equal((await linkAddr(a.ns, "eth0"))?.mtu, 1420);
      const b = await addPod(agent, { mtu: 1300 });
      assert.equal((await linkAddr(b.ns, "eth0"))?.mtu, 1300);
      assert.equal(b.result!.interfaces![1].mtu, 1300);
      await agent.kill("SIGTERM");
      agent = await startTestAgent({
        netns: host.path,
        podCidr: "10.68.0.0/24",
        stateDir: agent.stateDir,
        socket: agent.socket,
        mtu: 1200,
      });
      const c = await addPod(agent);
      assert.equal((await linkAddr(c.ns, "eth0"))?.mtu, 1200);
    } finally {
      await agent.cleanup();
      await first.cleanup();
    }
  });
});
