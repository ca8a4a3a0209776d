// The installed plugin is a native forwarder (src/plugin/forwarder.c) that hands each call to the
// agent, which runs the TypeScript plugin in process; when it cannot, it execs the full plugin
// installed beside it (weft-full). These tests tell the two paths apart by removing weft-full:
// what still works then was served by the agent through the frame protocol.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, renameSync } from "node:fs";
import { invokePlugin, resultAddresses, type CniErrorOut, type PluginCall } from "../../testlib/plugin.js";
import { addressesIn, e2eSkipReason, Host, k8sArgs } from "./fixture.js";

const skip = e2eSkipReason() ?? false;

describe("the native plugin forwarder", { skip }, () => {
  let h: Host;
  const full = () => `${h.plugin}-full`;
  const hideFull = () => renameSync(full(), `${full()}.hidden`);
  const restoreFull = () => { if (existsSync(`${full()}.hidden`)) renameSync(`${full()}.hidden`, full()); };
  before(async () => {
    h = await Host.open({ podCidr: "10.248.0.0/24" });
  });
  after(async () => {
    await h?.close();
  });
  const call = (command: PluginCall["command"], id: string, netns?: string): PluginCall =>
    ({ command, containerId: id, ...(netns ? { netns } : {}), ifname: "eth0", args: k8sArgs(id), path: h.cniPath, runIn: h.ns });

  test("install-cni puts the full plugin beside the forwarder", () => {
    assert.ok(existsSync(h.plugin), h.plugin);
    assert.ok(existsSync(full()), full());
  });

  test("with only the forwarder installed, ADD, CHECK, STATUS, GC and DEL are served by the agent", async () => {
    const pod = await h.pod("f");
    hideFull();
    try {
      const add = await invokePlugin(h.plugin, call("ADD", "fwd-1", pod.path), h.weftConf("1.1.0"));
      assert.equal(add.code, 0, add.stdout + add.stderr);
      const [addr] = resultAddresses(add.json);
      assert.deepEqual(await addressesIn(pod.path, "eth0"), [addr.split("/")[0]]);
      const check = await invokePlugin(h.plugin, call("CHECK", "fwd-1", pod.path), h.weftConf("1.1.0", { prevResult: add.json }));
      assert.equal(check.code, 0, check.stdout);
      const status = await invokePlugin(h.plugin, { command: "STATUS", runIn: h.ns }, h.weftConf("1.1.0"));
      assert.equal(status.code, 0, status.stdout);
      const gc = await invokePlugin(h.plugin, { command: "GC", path: h.cniPath, runIn: h.ns },
        h.weftConf("1.1.0", { "cni.dev/valid-attachments": [{ containerID: "fwd-1", ifname: "eth0" }] }));
      assert.equal(gc.code, 0, gc.stdout);
      // An older cniVersion gets its own result shape from the in-agent plugin, too.
      const del = await invokePlugin(h.plugin, call("DEL", "fwd-1", pod.path), h.weftConf("0.3.1"));
      assert.equal(del.code, 0, del.stdout);
      assert.deepEqual(await addressesIn(pod.path, "eth0").catch(() => []), []);
    } finally {
      restoreFull();
    }
  });

  test("errors from the in-agent plugin are spec JSON in the config's version, exit code 1", async () => {
    hideFull();
    try {
      const version = await invokePlugin(h.plugin, call("ADD", "fwd-2", "/run/netns/wt-none"), h.weftConf("9.9.9"));
      assert.equal(version.code, 1);
      assert.equal((version.json as CniErrorOut).code, 1, version.stdout);
      const gone = await invokePlugin(h.plugin, call("ADD", "fwd-2", "/run/netns/wt-no-such-ns"), h.weftConf("0.4.0"));
      assert.equal(gone.code, 1);
      assert.deepEqual({ v: (gone.json as CniErrorOut).cniVersion, code: (gone.json as CniErrorOut).code }, { v: "0.4.0", code: 3 });
    } finally {
      restoreFull();
    }
  });

  test("stdin over 1 MiB goes to the full plugin, which refuses it with code 6", async () => {
    const big = { ...h.weftConf("1.0.0"), pad: "x".repeat(2 * 1024 * 1024) };
    const r = await invokePlugin(h.plugin, call("ADD", "fwd-3", "/run/netns/wt-none"), big);
    assert.equal(r.code, 1);
    assert.equal((r.json as CniErrorOut).code, 6, r.stdout);
  });

  test("VERSION is answered by the full plugin", async () => {
    const r = await invokePlugin(h.plugin, { command: "VERSION", runIn: h.ns }, { cniVersion: "1.0.0" });
    assert.equal(r.code, 0);
    assert.ok((r.json as { supportedVersions: string[] }).supportedVersions.includes("1.1.0"));
  });

  test("agent down: the full plugin answers ADD with 11 and STATUS with 50; without it, code 5 says what is missing", async () => {
    await h.stopAgent();
    try {
      const pod = await h.pod("f");
      const add = await invokePlugin(h.plugin, call("ADD", "fwd-4", pod.path), h.weftConf("1.0.0"));
      assert.equal((add.json as CniErrorOut).code, 11, add.stdout);
      const st = await invokePlugin(h.plugin, { command: "STATUS", runIn: h.ns }, h.weftConf("1.1.0"));
      assert.equal((st.json as CniErrorOut).code, 50, st.stdout);
      hideFull();
      try {
        const lost = await invokePlugin(h.plugin, call("ADD", "fwd-4", pod.path), h.weftConf("1.0.0"));
        assert.equal(lost.code, 1);
        assert.equal((lost.json as CniErrorOut).code, 5);
        assert.match((lost.json as CniErrorOut).msg, /cannot run the plugin beside/);
      } finally {
        restoreFull();
      }
    } finally {
      await h.startAgent();
    }
  });
});
