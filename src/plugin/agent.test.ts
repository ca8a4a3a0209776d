// The compiled plugin against a stand-in agent on a unix socket: what it sends for each verb
// (the contract with src/agent), how it converts the agent's 1.1.0 result per cniVersion, and
// delegated IPAM with the real host-local plugin.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import type { AddRequest, AgentRequest, CheckRequest, DelRequest, GcRequest } from "../agent-api/schema.js";
import { toVersion } from "../cni/result.js";
import type { CniVersion, Result } from "../cni/types.js";
import { createNetns, removeAllNetns, type TestNetns } from "../testlib/netns.js";
import { binarySkipReason, FakeAgent, invoke, REFERENCE_DIR, tempDir } from "../testlib/plugin-exec.js";

const skip = binarySkipReason();
const VERSIONS: CniVersion[] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

describe("weft-cni binary talking to an agent", { skip }, () => {
  let pod: TestNetns;
  const tmp = tempDir();
  const socket = `${tmp.path}/agent.sock`;
  let agent: FakeAgent;
  let env: Record<string, string | undefined>;
  const conf = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ cniVersion: "1.0.0", name: "weft", type: "weft", socket, ...extra });

  /** What an agent answers to ADD: host veth + pod eth0, both families, every 1.1.0 field. */
  const agentResult = (netns: string): Result => ({
    cniVersion: "1.1.0",
    interfaces: [
      { name: "wft0a1b2c3d", mac: "02:00:00:00:00:01", mtu: 1450 },
      { name: "eth0", mac: "02:00:00:00:00:02", mtu: 1450, sandbox: netns },
    ],
    ips: [
      { address: "10.244.0.5/32", gateway: "169.254.1.1", interface: 1 },
      { address: "fd00:244::5/128", gateway: "fe80::1", interface: 1 },
    ],
    routes: [
      { dst: "0.0.0.0/0", gw: "169.254.1.1", mtu: 1450 },
      { dst: "::/0", gw: "fe80::1" },
    ],
  });

  before(async () => {
    pod = await createNetns("cni");
    env = {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "pod-1234",
      CNI_NETNS: pod.path,
      CNI_IFNAME: "eth0",
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
      CNI_PATH: REFERENCE_DIR,
    };
    agent = await new FakeAgent(socket).start();
  });
  after(async () => {
    await agent.stop();
    await removeAllNetns();
    tmp.remove();
  });
  const last = <T extends AgentRequest>(): T => agent.requests[agent.requests.length - 1] as T;

  test("ADD sends network, container, netns, ifname, CNI_ARGS and mtu; the result comes back in every version's format", async () => {
    agent.reply = () => ({ ok: true, result: agentResult(pod.path) });
    for (const v of VERSIONS) {
      const r = await invoke(env, conf({ cniVersion: v, mtu: 1450 }));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(last<AddRequest>(), {
        op: "add",
        network: "weft",
        containerId: "pod-1234",
        netns: pod.path,
        ifname: "eth0",
        args: { IgnoreUnknown: "1", K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "web-0" },
        mtu: 1450,
      });
      assert.deepEqual(r.json, toVersion(agentResult(pod.path), v));
      const out = r.json as {
        cniVersion: string;
        ips: Array<Record<string, unknown>>;
        interfaces: Array<Record<string, unknown>>;
        routes: Array<Record<string, unknown>>;
      };
      assert.equal(out.cniVersion, v);
      if (v.startsWith("0."))
        assert.deepEqual(
          out.ips.map((i) => i.version),
          ["4", "6"],
        );
      else assert.ok(out.ips.every((i) => !("version" in i)));
      const has110 = v === "1.1.0";
      assert.equal("mtu" in out.interfaces[0], has110, `interfaces[].mtu only in 1.1.0 (${v})`);
      assert.equal("mtu" in out.routes[0], has110, `routes[].mtu only in 1.1.0 (${v})`);
    }
  });

  test("ADD adds the config's dns when the agent has none, and appends to a prevResult", async () => {
    agent.reply = () => ({ ok: true, result: agentResult(pod.path) });
    const prev = {
      cniVersion: "1.0.0",
      interfaces: [{ name: "lo", sandbox: pod.path }],
      ips: [{ address: "127.0.0.1/8", interface: 0 }],
    };
    const r = await invoke(
      env,
      conf({ dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] }, prevResult: prev }),
    );
    assert.equal(r.code, 0, r.stdout);
    const out = r.json as {
      dns: unknown;
      interfaces: Array<{ name: string }>;
      ips: Array<{ address: string; interface: number }>;
    };
    assert.deepEqual(out.dns, { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] });
    assert.deepEqual(
      out.interfaces.map((i) => i.name),
      ["lo", "wft0a1b2c3d", "eth0"],
    );
    assert.equal(out.interfaces[out.ips[1].interface].name, "eth0", "our ips point at our eth0 after the merge");
  });

  test("the agent's error code and message reach the runtime unchanged", async () => {
    agent.reply = () => ({
      ok: false,
      code: 101,
      msg: "pod CIDR 10.244.0.0/24 has no free address",
      details: "254 of 254 in use",
    });
    const r = await invoke(env, conf());
    assert.notEqual(r.code, 0);
    assert.deepEqual(r.json, {
      cniVersion: "1.0.0",
      code: 101,
      msg: "pod CIDR 10.244.0.0/24 has no free address",
      details: "254 of 254 in use",
    });
  });

  test("an agent that does not answer: code 11 after timeoutMs (50 for STATUS)", async () => {
    agent.reply = () => ({ hang: true });
    const t0 = Date.now();
    const r = await invoke(env, conf({ timeoutMs: 300 }));
    assert.equal((r.json as { code: number }).code, 11, r.stdout);
    assert.match((r.json as { msg: string }).msg, /did not answer within 300 ms/);
    assert.ok(Date.now() - t0 < 10_000);
    const s = await invoke({ CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.1.0", timeoutMs: 300 }));
    assert.equal((s.json as { code: number }).code, 50, s.stdout);
  });

  test("an answer that is not the protocol is an I/O failure (code 5)", async () => {
    for (const raw of ["garbage\n", "", '{"ok": "yes"}\n']) {
      agent.reply = () => ({ raw });
      const r = await invoke(env, conf());
      assert.equal((r.json as { code: number }).code, 5, `${JSON.stringify(raw)} -> ${r.stdout}`);
    }
    agent.reply = () => ({ ok: true });
    const r = await invoke(env, conf());
    assert.equal((r.json as { code: number }).code, 5, "ADD answered without a result");
  });

  test("DEL without CNI_NETNS, or with a netns that is gone, succeeds and sends no netns", async () => {
    agent.reply = () => ({ ok: true });
    for (const netns of [undefined, "/run/netns/wt-gone-000000"]) {
      const r = await invoke({ ...env, CNI_COMMAND: "DEL", CNI_NETNS: netns }, conf({ prevResult: { broken: true } }));
      assert.equal(r.code, 0, r.stdout);
      assert.equal(r.stdout, "", "DEL prints nothing on success");
      assert.deepEqual(last<DelRequest>(), { op: "del", network: "weft", containerId: "pod-1234", ifname: "eth0" });
    }
    const r = await invoke({ ...env, CNI_COMMAND: "DEL" }, conf());
    assert.equal(r.code, 0);
    assert.equal(last<DelRequest>().netns, pod.path, "an existing netns is passed on");
  });

  test("CHECK sends the prevResult in 1.1.0 form whatever version it came in", async () => {
    agent.reply = () => ({ ok: true });
    const prev040 = {
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0", sandbox: pod.path }],
      ips: [{ version: "4", address: "10.244.0.5/32", interface: 0 }],
      routes: [{ dst: "0.0.0.0/0" }],
    };
    const r = await invoke({ ...env, CNI_COMMAND: "CHECK" }, conf({ cniVersion: "0.4.0", prevResult: prev040 }));
    assert.equal(r.code, 0, r.stdout);
    assert.equal(r.stdout, "");
    assert.deepEqual(last<CheckRequest>(), {
      op: "check",
      network: "weft",
      containerId: "pod-1234",
      netns: pod.path,
      ifname: "eth0",
      prevResult: {
        cniVersion: "1.1.0",
        interfaces: [{ name: "eth0", sandbox: pod.path }],
        ips: [{ address: "10.244.0.5/32", interface: 0 }],
        routes: [{ dst: "0.0.0.0/0" }],
      },
    });
  });

  test("GC forwards the valid attachments (also the older cni.dev/attachments key)", async () => {
    agent.reply = () => ({ ok: true });
    const a = [
      { containerID: "pod-1", ifname: "eth0" },
      { containerID: "pod-2", ifname: "net1" },
    ];
    for (const key of ["cni.dev/valid-attachments", "cni.dev/attachments"]) {
      const r = await invoke({ CNI_COMMAND: "GC", CNI_PATH: REFERENCE_DIR }, conf({ cniVersion: "1.1.0", [key]: a }));
      assert.equal(r.code, 0, r.stdout);
      assert.deepEqual(last<GcRequest>(), { op: "gc", network: "weft", validAttachments: a });
    }
  });

  test("STATUS: exit 0 and no output when the agent is ready; its 50/51 otherwise", async () => {
    agent.reply = () => ({ ok: true });
    const ok = await invoke({ CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.1.0" }));
    assert.equal(ok.code, 0, ok.stdout);
    assert.equal(ok.stdout, "");
    assert.deepEqual(last(), { op: "status", network: "weft" });
    agent.reply = () => ({ ok: false, code: 51, msg: "dataplane is down" });
    const bad = await invoke({ CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.1.0" }));
    assert.equal((bad.json as { code: number }).code, 51);
  });

  describe("delegated IPAM (real host-local)", () => {
    const data = tempDir("weft-hl-");
    after(() => data.remove());
    const ipam = { type: "host-local", subnet: "10.251.3.0/24", routes: [{ dst: "0.0.0.0/0" }], dataDir: data.path };
    const reserved = () => {
      const dir = `${data.path}/weft`;
      return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
    };

    test("ADD passes host-local's address and routes to the agent; DEL (netns gone) releases it", async () => {
      agent.reply = (req) => {
        const add = req as AddRequest;
        if (req.op !== "add") return { ok: true };
        const r = agentResult(pod.path);
        return {
          ok: true,
          result: { ...r, ips: add.ipam!.ips.map((ip) => ({ ...ip, interface: 1 })), routes: add.ipam!.routes },
        };
      };
      const r = await invoke(env, conf({ ipam }));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const req = agent.requests.filter((q) => q.op === "add").pop() as AddRequest;
      assert.equal(req.ipam?.ips.length, 1);
      assert.match(req.ipam!.ips[0].address, /^10\.251\.3\.\d+\/24$/);
      assert.equal(req.ipam!.ips[0].gateway, "10.251.3.1");
      assert.equal("interface" in req.ipam!.ips[0], false, "IPAM results carry no interface index");
      assert.deepEqual(req.ipam!.routes, [{ dst: "0.0.0.0/0" }]);
      assert.deepEqual(reserved(), [req.ipam!.ips[0].address.split("/")[0]], "host-local holds exactly that address");
      assert.equal((r.json as { ips: Array<{ address: string }> }).ips[0].address, req.ipam!.ips[0].address);

      // CHECK runs host-local's CHECK too, then tells the agent the addresses are delegated.
      const chk = await invoke({ ...env, CNI_COMMAND: "CHECK" }, conf({ ipam, prevResult: r.json }));
      assert.equal(chk.code, 0, chk.stdout + chk.stderr);
      assert.equal(last<CheckRequest>().delegatedIpam, true);

      const del = await invoke(
        { ...env, CNI_COMMAND: "DEL", CNI_NETNS: undefined },
        conf({ ipam, prevResult: r.json }),
      );
      assert.equal(del.code, 0, del.stdout + del.stderr);
      assert.deepEqual(last<DelRequest>(), {
        op: "del",
        network: "weft",
        containerId: "pod-1234",
        ifname: "eth0",
        delegatedIpam: true,
      });
      assert.deepEqual(reserved(), [], "DEL released the host-local reservation");
    });

    test("an agent failure after host-local's ADD rolls the reservation back", async () => {
      agent.reply = () => ({ ok: false, code: 104, msg: "address 10.251.3.2 is already in use on this node" });
      const r = await invoke(env, conf({ ipam }));
      assert.equal((r.json as { code: number }).code, 104, r.stdout);
      assert.deepEqual(reserved(), []);
    });

    test("a host-local failure is reported with its code and the agent is not asked", async () => {
      const before = agent.requests.length;
      const r = await invoke(env, conf({ ipam: { ...ipam, subnet: "10.251.3.0/33" } }));
      assert.notEqual(r.code, 0);
      assert.match((r.json as { msg: string }).msg, /IPAM plugin host-local ADD failed/);
      assert.equal(agent.requests.length, before);
    });

    test("an IPAM plugin that is not in CNI_PATH is code 7 naming it", async () => {
      const r = await invoke(env, conf({ ipam: { type: "no-such-ipam" } }));
      assert.equal((r.json as { code: number }).code, 7);
      assert.match((r.json as { msg: string }).msg, /no-such-ipam/);
    });

    test("GC and STATUS skip a delegate that predates spec 1.1.0 (host-local 1.1.1)", async () => {
      agent.reply = () => ({ ok: true });
      const gc = await invoke(
        { CNI_COMMAND: "GC", CNI_PATH: REFERENCE_DIR },
        conf({ cniVersion: "1.1.0", ipam, "cni.dev/valid-attachments": [] }),
      );
      assert.equal(gc.code, 0, gc.stdout + gc.stderr);
      const st = await invoke({ CNI_COMMAND: "STATUS", CNI_PATH: REFERENCE_DIR }, conf({ cniVersion: "1.1.0", ipam }));
      assert.equal(st.code, 0, st.stdout + st.stderr);
    });
  });

  test("nothing is left in the temp dir but the agent's socket", () => {
    assert.deepEqual(tmp.entries(), ["agent.sock"]);
  });
});
