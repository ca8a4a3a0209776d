// Pods wired by the real plugin talk to each other (ICMP and TCP), with weft's own IPAM and with
// IPAM delegated to the reference host-local plugin.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { invokePlugin, resultAddresses, REFERENCE_PLUGIN_DIR } from "../../testlib/plugin.js";
import { addressesIn, e2eSkipReason, Host, inCidr4, k8sArgs, ping, startEchoServer, tcpEcho } from "./fixture.js";

const skip =
  e2eSkipReason() ?? (!existsSync(join(REFERENCE_PLUGIN_DIR, "host-local")) ? "no host-local in /usr/lib/cni" : false);

describe("pod to pod", { skip }, () => {
  let h: Host;
  before(async () => {
    h = await Host.open({ podCidr: "10.246.0.0/24" });
  });
  after(async () => {
    await h?.close();
  });

  const call = (command: "ADD" | "DEL", id: string, netns: string, extra: Record<string, unknown> = {}) =>
    invokePlugin(
      h.plugin,
      { command, containerId: id, netns, ifname: "eth0", args: k8sArgs(id), path: h.cniPath, runIn: h.ns },
      h.weftConf("1.0.0", extra),
    );

  test("two pods reach each other by ping and TCP", async () => {
    const a = await h.pod("a");
    const b = await h.pod("b");
    const ra = await call("ADD", "pod-a", a.path);
    const rb = await call("ADD", "pod-b", b.path);
    assert.equal(ra.code, 0, ra.stdout);
    assert.equal(rb.code, 0, rb.stdout);
    const [ipA] = resultAddresses(ra.json);
    const [ipB] = resultAddresses(rb.json);
    assert.ok(await ping(a.path, ipB), `a (${ipA}) cannot ping b (${ipB})`);
    assert.ok(await ping(b.path, ipA), `b (${ipB}) cannot ping a (${ipA})`);
    const server = await startEchoServer(b.path, 8080);
    try {
      assert.equal(await tcpEcho(a.path, ipB, 8080, "hello over weft\n"), "hello over weft\n");
    } finally {
      await server.stop();
    }
    // After DEL the peer is unreachable: the route really was weft's.
    assert.equal((await call("DEL", "pod-b", b.path)).code, 0);
    assert.equal(await ping(a.path, ipB), false, "b still answers after DEL");
    assert.equal((await call("DEL", "pod-a", a.path)).code, 0);
  });

  test("ipam delegated to host-local (CNI_PATH=/usr/lib/cni): its address, its records, released on DEL", async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), "weft-hostlocal-"));
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const ipam = { type: "host-local", ranges: [[{ subnet: "10.247.0.0/24" }]], dataDir };
    const netDir = join(dataDir, h.name);
    const base = (await h.ipamCheck()).report.allocations;
    const a = await h.pod("ha");
    const b = await h.pod("hb");
    const ra = await call("ADD", "hl-a", a.path, { ipam });
    const rb = await call("ADD", "hl-b", b.path, { ipam });
    assert.equal(ra.code, 0, ra.stdout + ra.stderr);
    assert.equal(rb.code, 0, rb.stdout + rb.stderr);
    const [ipA] = resultAddresses(ra.json);
    const [ipB] = resultAddresses(rb.json);
    for (const ip of [ipA, ipB]) {
      assert.ok(inCidr4(ip, "10.247.0.0/24"), `${ip} is not from host-local's range`);
      assert.ok(existsSync(join(netDir, ip)), `host-local has no record of ${ip}`);
    }
    assert.deepEqual(await addressesIn(a.path, "eth0"), [ipA]);
    assert.equal((await h.ipamCheck()).code, 0, "delegated addresses are no leak or conflict for weft");
    assert.ok(await ping(a.path, ipB), "delegated-IPAM pods reach each other");
    assert.equal((await call("DEL", "hl-a", a.path, { ipam })).code, 0);
    assert.equal((await call("DEL", "hl-b", b.path, { ipam })).code, 0);
    const left = readdirSync(netDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    assert.deepEqual(left, [], "host-local released both addresses (weft delegated DEL)");
    const end = await h.ipamCheck();
    assert.equal(end.code, 0);
    assert.equal(end.report.allocations, base, "weft keeps no record of the deleted pods");
  });
});
