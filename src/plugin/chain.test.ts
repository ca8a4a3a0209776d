// weft first in a chain, as install-cni sets it up: its ADD result must be a prevResult that the
// reference plugins (containernetworking-plugins 1.1.1: tuning, portmap, bandwidth; spec up to
// 1.0.0) accept, act on and pass on. All plugins run inside a test "host" netns; the pod's eth0
// is a real veth made by the test, standing in for what the agent would make.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import type { Result } from "../cni/types.js";
import { createNetns, removeAllNetns, type TestNetns } from "../testlib/netns.js";
import { invokePlugin, type PluginCall } from "../testlib/plugin.js";
import { binarySkipReason, FakeAgent, PLUGIN_BIN, REFERENCE_DIR, tempDir } from "../testlib/plugin-exec.js";

const skip =
  binarySkipReason() ||
  (existsSync(`${REFERENCE_DIR}/tuning`)
    ? false
    : `reference CNI plugins not in ${REFERENCE_DIR} (apt install containernetworking-plugins)`);

/** Go's 0.x results print an empty "dns": {}; it carries nothing, so compare without it. */
function withoutEmptyDns(v: unknown): unknown {
  const o = { ...(v as Record<string, unknown>) };
  if (o.dns && Object.keys(o.dns as object).length === 0) delete o.dns;
  return o;
}

describe("weft-cni ADD output feeds the reference chain plugins", { skip }, () => {
  let host: TestNetns;
  let pod: TestNetns;
  const tmp = tempDir();
  let agent: FakeAgent;
  const podIp = "10.244.9.5";

  before(async () => {
    host = await createNetns("chh");
    pod = await createNetns("chp");
    await host.exec(["ip", "link", "add", "wfthost0", "type", "veth", "peer", "name", "eth0", "netns", pod.path]);
    await pod.exec(["ip", "link", "set", "eth0", "up"]);
    await pod.exec(["ip", "addr", "add", `${podIp}/32`, "dev", "eth0"]);
    const hostMac = JSON.parse(await host.exec(["ip", "-j", "link", "show", "wfthost0"]))[0].address as string;
    const podMac = JSON.parse(await pod.exec(["ip", "-j", "link", "show", "eth0"]))[0].address as string;
    const result: Result = {
      cniVersion: "1.1.0",
      interfaces: [
        { name: "wfthost0", mac: hostMac, mtu: 1500 },
        { name: "eth0", mac: podMac, mtu: 1500, sandbox: pod.path },
      ],
      ips: [{ address: `${podIp}/32`, gateway: "169.254.1.1", interface: 1 }],
      routes: [{ dst: "0.0.0.0/0", gw: "169.254.1.1", mtu: 1500 }],
    };
    agent = await new FakeAgent(`${tmp.path}/agent.sock`, () => ({ ok: true, result })).start();
  });
  after(async () => {
    await agent?.stop();
    await removeAllNetns();
    tmp.remove();
  });

  for (const v of ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]) {
    test(`cniVersion ${v}: tuning, portmap and bandwidth accept weft's result and pass it on`, async () => {
      const call = (command: PluginCall["command"]): PluginCall => ({
        command,
        containerId: `chain-${v.replace(/\./g, "")}`,
        netns: pod.path,
        ifname: "eth0",
        path: [REFERENCE_DIR],
        runIn: host.path,
      });
      const base = { cniVersion: v, name: "weft" };

      const weft = await invokePlugin(PLUGIN_BIN, call("ADD"), { ...base, type: "weft", socket: agent.path });
      assert.equal(weft.code, 0, weft.stdout + weft.stderr);
      const prev = weft.json;

      // tuning really changes the pod's eth0, which it finds from CNI_IFNAME in the result's sandbox.
      const mtu = 1400 - Number(v.replace(/\./g, ""));
      const tuning = await invokePlugin(`${REFERENCE_DIR}/tuning`, call("ADD"), {
        ...base,
        type: "tuning",
        mtu,
        prevResult: prev,
      });
      assert.equal(tuning.code, 0, `tuning rejected weft's ${v} result: ${tuning.stdout}${tuning.stderr}`);
      assert.deepEqual(withoutEmptyDns(tuning.json), prev);
      assert.equal(JSON.parse(await pod.exec(["ip", "-j", "link", "show", "eth0"]))[0].mtu, mtu);

      // portmap finds the pod address through ips[].interface -> a sandbox interface.
      const pm = {
        ...base,
        type: "portmap",
        snat: true,
        runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: "tcp" }] },
      };
      const portmap = await invokePlugin(`${REFERENCE_DIR}/portmap`, call("ADD"), { ...pm, prevResult: prev });
      assert.equal(portmap.code, 0, `portmap rejected weft's ${v} result: ${portmap.stdout}${portmap.stderr}`);
      assert.deepEqual(withoutEmptyDns(portmap.json), prev);
      const rules = await host.exec(["iptables-save", "-t", "nat"]);
      assert.match(
        rules,
        new RegExp(`--to-destination ${podIp.replace(/\./g, "\\.")}:80`),
        "portmap DNATs to weft's pod address",
      );

      const bw = await invokePlugin(`${REFERENCE_DIR}/bandwidth`, call("ADD"), {
        ...base,
        type: "bandwidth",
        prevResult: prev,
      });
      assert.equal(bw.code, 0, `bandwidth rejected weft's ${v} result: ${bw.stdout}${bw.stderr}`);
      assert.deepEqual(withoutEmptyDns(bw.json), prev);

      // DEL in reverse order with the final result, as a runtime does.
      for (const [exe, conf] of [
        [`${REFERENCE_DIR}/bandwidth`, { ...base, type: "bandwidth" }],
        [`${REFERENCE_DIR}/portmap`, pm],
        [`${REFERENCE_DIR}/tuning`, { ...base, type: "tuning" }],
      ] as const) {
        const d = await invokePlugin(exe, call("DEL"), { ...conf, prevResult: prev });
        assert.equal(d.code, 0, `${exe} DEL: ${d.stdout}${d.stderr}`);
      }
      assert.doesNotMatch(
        await host.exec(["iptables-save", "-t", "nat"]),
        new RegExp(`${podIp.replace(/\./g, "\\.")}:80`),
        "portmap DEL removed its rules",
      );
    });
  }
});
