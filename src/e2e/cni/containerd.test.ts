// containerd 1.6 (Debian) as the container runtime on a weft network, beside podman's tests: a
// private containerd in the test's host netns, `ctr run --cni` reading the conflist install-cni
// wrote (ctr takes only the default CNI dirs, so the test's dirs are bind-mounted over them in a
// private mount namespace), the real plugin ADDing each container through weft's agent, and the
// DEL ctr sends when the task ends freeing the address.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, linkSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { BUSYBOX_IMAGE, LAB_POD_IMAGE } from "../../image/build.js";
import { ContainerdSandbox } from "../../testlib/containerd.js";
import { REFERENCE_PLUGIN_DIR } from "../../testlib/plugin.js";
import { LAB_POD_ARGV, testImages } from "../image/fixture.js";
import { addressesIn, Host, inCidr4, linksIn, tag, tcpEcho } from "./fixture.js";

describe("containerd (ctr run --cni) on a weft network", () => {
  let h: Host;
  let ctd: ContainerdSandbox;
  const net = `weft-${tag()}`;

  before(async () => {
    const list = await testImages();
    h = await Host.open({ podCidr: "10.251.0.0/24", name: net });
    // One plugin dir as containerd has it: weft's installed binaries and the reference plugins
    // its conflist chains (portmap) or a runtime adds (loopback).
    const bin = join(h.work, "cni-bin");
    mkdirSync(bin);
    for (const f of readdirSync(h.binDir)) linkSync(join(h.binDir, f), join(bin, f));
    for (const f of ["loopback", "portmap"]) copyFileSync(join(REFERENCE_PLUGIN_DIR, f), join(bin, f));
    ctd = await ContainerdSandbox.start({ netns: h.ns, cniConfDir: h.confDir, cniBinDir: bin });
    h.defer(() => ctd.close());
    for (const name of [BUSYBOX_IMAGE, LAB_POD_IMAGE]) {
      const i = list.images.find((x) => x.name === name);
      assert.ok(i, `image ${name} was not built`);
      await ctd.ok(["images", "import", i.archive]);
    }
  });
  after(async () => {
    await h?.close();
  });

  test("containers get weft addresses, reach each other, and the DEL on task exit releases the address", async () => {
    const linksBefore = await h.hostLinks();
    const base = (await h.ipamCheck()).report.allocations;
    const running: Array<[string, ChildProcess]> = [];
    try {
      running.push(["c1", await ctd.start(BUSYBOX_IMAGE, "c1", ["sleep", "3600"], ["--cni"])]);
      running.push(["c2", await ctd.start(LAB_POD_IMAGE, "c2", LAB_POD_ARGV(["8080/TCP"]), ["--cni"])]);
      const ns1 = `/proc/${await ctd.taskPid("c1")}/ns/net`;
      const ns2 = `/proc/${await ctd.taskPid("c2")}/ns/net`;
      const [ip1] = await addressesIn(ns1, "eth0");
      const [ip2] = await addressesIn(ns2, "eth0");
      for (const ip of [ip1, ip2])
        assert.ok(ip && inCidr4(ip, h.podCidr), `${ip} is not from weft's pod CIDR ${h.podCidr}`);
      assert.notEqual(ip1, ip2);
      const chk = await h.ipamCheck();
      assert.equal(chk.report.allocations, base + 2, "the agent allocated both addresses");
      assert.equal(chk.code, 0);

      // From inside c1 (busybox ping in the container), then TCP from c1's netns to c2's lab-pod.
      const ping = await ctd.ctr(["task", "exec", "--exec-id", "ping1", "c1", "ping", "-c", "1", "-W", "2", ip2]);
      assert.equal(ping.code, 0, `c1 cannot ping c2: ${ping.stdout}${ping.stderr}`);
      let echo = "";
      for (let i = 0; i < 50 && echo !== "hello"; i++) {
        if (i) await new Promise((r) => setTimeout(r, 100)); // the pod server may still be starting
        echo = await tcpEcho(ns1, ip2, 8080, "hello");
      }
      assert.equal(echo, "hello", "c1 -> c2:8080 over TCP (lab-pod echoes)");

      const s2 = await ctd.stop("c2", running.pop()![1]);
      assert.doesNotMatch(s2.stderr, /network review/, `ctr's CNI DEL failed: ${s2.stderr}`);
      assert.equal((await h.ipamCheck()).report.allocations, base + 1, "c2's DEL released its address");
      const ping2 = await ctd.ctr(["task", "exec", "--exec-id", "ping2", "c1", "ping", "-c", "1", "-W", "1", ip2]);
      assert.notEqual(ping2.code, 0, "c2's address no longer answers");
      const s1 = await ctd.stop("c1", running.pop()![1]);
      assert.doesNotMatch(s1.stderr, /network review/, `ctr's CNI DEL failed: ${s1.stderr}`);
    } finally {
      for (const [id, child] of running.reverse()) await ctd.stop(id, child);
    }
    const end = await h.ipamCheck();
    assert.equal(end.code, 0, JSON.stringify(end.report));
    assert.equal(end.report.allocations, base);
    assert.deepEqual(await linksIn(h.ns), linksBefore, "no host-side links left");
    assert.equal((await ctd.ok(["container", "ls", "-q"])).trim(), "", "ctr run --rm removed both containers");
  });
});
