// Every CNI verb through the real plugin executable, against a real agent in a "host" netns,
// exactly as a runtime calls it (env vars, config on stdin, JSON on stdout).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { run } from "../../kernel/exec.js";
import { invokePlugin, resultAddresses, type CniErrorOut } from "../../testlib/plugin.js";
import { addressesIn, e2eSkipReason, Host, inCidr4, k8sArgs } from "./fixture.js";

const VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const skip = e2eSkipReason() ?? false;

interface AnyResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ version?: string; address: string; gateway?: string; interface?: number }>;
  routes?: Array<{ dst: string; gw?: string }>;
}

function assertCniError(json: unknown, what: string): CniErrorOut {
  const e = json as CniErrorOut;
  assert.ok(
    e && typeof e.code === "number" && e.code > 0,
    `${what}: expected a CNI error object, got ${JSON.stringify(json)}`,
  );
  assert.equal(typeof e.msg, "string");
  assert.ok(e.msg.length > 0);
  return e;
}

describe("CNI verbs through the real plugin", { skip }, () => {
  let h: Host;
  before(async () => {
    h = await Host.open({ podCidr: "10.244.0.0/24" });
  });
  after(async () => {
    await h?.close();
  });

  const call = (
    command: "ADD" | "DEL" | "CHECK",
    id: string,
    netns: string | undefined,
    cniVersion: string,
    extra: Record<string, unknown> = {},
  ) =>
    invokePlugin(
      h.plugin,
      {
        command,
        containerId: id,
        ...(netns ? { netns } : {}),
        ifname: "eth0",
        args: k8sArgs(id),
        path: h.cniPath,
        runIn: h.ns,
      },
      h.weftConf(cniVersion, extra),
    );

  const allocations = async () => (await h.ipamCheck()).report.allocations;

  test("VERSION answers in the config's version and lists every supported version", async () => {
    for (const v of VERSIONS) {
      const r = await invokePlugin(h.plugin, { command: "VERSION", runIn: h.ns }, { cniVersion: v });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const out = r.json as { cniVersion: string; supportedVersions: string[] };
      assert.equal(out.cniVersion, v);
      for (const s of VERSIONS) assert.ok(out.supportedVersions.includes(s), `supportedVersions lacks ${s}`);
    }
  });

  for (const v of VERSIONS) {
    test(`ADD/CHECK/DEL with cniVersion ${v}: result in ${v}'s format, address on eth0, released on DEL`, async () => {
      const pod = await h.pod("v");
      const id = `ver-${v.replace(/\./g, "")}`;
      const base = await allocations();
      const add = await call("ADD", id, pod.path, v);
      assert.equal(add.code, 0, add.stdout + add.stderr);
      const res = add.json as AnyResult;
      assert.equal(res.cniVersion, v);
      const ips = res.ips ?? [];
      assert.equal(ips.length, 1, "one IPv4 address for a single-stack pod CIDR");
      if (v.startsWith("0.")) assert.equal(ips[0].version, "4", "0.3.x/0.4.0 results carry ips[].version");
      else assert.ok(!("version" in ips[0]), "1.x results have no ips[].version");
      const [addr, prefix] = ips[0].address.split("/");
      assert.ok(prefix, "address is in CIDR notation");
      assert.ok(inCidr4(addr, h.podCidr), `${addr} not in ${h.podCidr}`);
      // The address is really there, on the interface the result points at.
      const ifs = res.interfaces ?? [];
      const idx = ips[0].interface;
      assert.equal(typeof idx, "number", "ips[].interface points into interfaces");
      assert.equal(ifs[idx!].name, "eth0");
      assert.equal(ifs[idx!].sandbox, pod.path);
      assert.deepEqual(await addressesIn(pod.path, "eth0"), [addr]);
      const routes = JSON.parse(
        await run(["ip", "-j", "-4", "route", "show", "default"], { netns: pod.path }),
      ) as unknown[];
      assert.equal(routes.length, 1, "pod has a default route");
      assert.equal(await allocations(), base + 1);

      if (v !== "0.3.0" && v !== "0.3.1") {
        const chk = await call("CHECK", id, pod.path, v, { prevResult: res });
        assert.equal(chk.code, 0, chk.stdout + chk.stderr);
      }
      const del = await call("DEL", id, pod.path, v, { prevResult: res });
      assert.equal(del.code, 0, del.stdout + del.stderr);
      const links = JSON.parse(await run(["ip", "-j", "link", "show"], { netns: pod.path })) as Array<{
        ifname: string;
      }>;
      assert.deepEqual(
        links.map((l) => l.ifname),
        ["lo"],
        "eth0 removed from the pod",
      );
      assert.equal(await allocations(), base);
    });
  }

  test("a second ADD of the same container+ifname is an error and leaves the first intact", async () => {
    const pod = await h.pod("d");
    const base = await allocations();
    const first = await call("ADD", "dup", pod.path, "1.0.0");
    assert.equal(first.code, 0, first.stdout);
    const addr = resultAddresses(first.json);
    const again = await call("ADD", "dup", pod.path, "1.0.0");
    assert.notEqual(again.code, 0, `duplicate ADD succeeded: ${again.stdout}`);
    assertCniError(again.json, "duplicate ADD");
    assert.deepEqual(await addressesIn(pod.path, "eth0"), addr);
    assert.equal(await allocations(), base + 1);
    assert.equal((await call("DEL", "dup", pod.path, "1.0.0", { prevResult: first.json })).code, 0);
    assert.equal(await allocations(), base);
  });

  test("DEL twice succeeds; DEL of a container never added succeeds", async () => {
    const pod = await h.pod("t");
    const base = await allocations();
    const add = await call("ADD", "twice", pod.path, "1.1.0");
    assert.equal(add.code, 0, add.stdout);
    for (let i = 0; i < 2; i++) {
      const del = await call("DEL", "twice", pod.path, "1.1.0", { prevResult: add.json });
      assert.equal(del.code, 0, `DEL #${i + 1}: ${del.stdout}${del.stderr}`);
    }
    const never = await call("DEL", "never-added", pod.path, "1.1.0");
    assert.equal(never.code, 0, never.stdout + never.stderr);
    assert.equal(await allocations(), base);
  });

  test("DEL without CNI_NETNS (the runtime lost the netns) succeeds and releases the address and host link", async () => {
    const linksBefore = await h.hostLinks();
    const pod = await h.pod("n");
    const base = await allocations();
    const add = await call("ADD", "nonetns", pod.path, "1.0.0");
    assert.equal(add.code, 0, add.stdout);
    assert.equal(await allocations(), base + 1);
    await pod.remove(); // the pod's namespace is gone, as after a node reboot
    const del = await call("DEL", "nonetns", undefined, "1.0.0", { prevResult: add.json });
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal(await allocations(), base);
    assert.deepEqual(await h.hostLinks(), linksBefore, "host side of the pod's link removed");
  });

  test("CHECK fails once the pod's address has been removed by hand", async () => {
    const pod = await h.pod("c");
    const add = await call("ADD", "chk", pod.path, "1.0.0");
    assert.equal(add.code, 0, add.stdout);
    assert.equal((await call("CHECK", "chk", pod.path, "1.0.0", { prevResult: add.json })).code, 0);
    const ip = (add.json as AnyResult).ips![0].address;
    await run(["ip", "addr", "del", ip, "dev", "eth0"], { netns: pod.path });
    const chk = await call("CHECK", "chk", pod.path, "1.0.0", { prevResult: add.json });
    assert.notEqual(chk.code, 0, "CHECK passed on a pod without its address");
    assertCniError(chk.json, "CHECK");
    assert.equal((await call("DEL", "chk", pod.path, "1.0.0", { prevResult: add.json })).code, 0);
  });

  test("GC with cni.dev/valid-attachments releases every other attachment of the network", async () => {
    const base = await allocations();
    const pods = await Promise.all([h.pod("g"), h.pod("g"), h.pod("g")]);
    const results: unknown[] = [];
    for (const [i, p] of pods.entries()) {
      const r = await call("ADD", `gc-${i}`, p.path, "1.1.0");
      assert.equal(r.code, 0, r.stdout);
      results.push(r.json);
    }
    assert.equal(await allocations(), base + 3);
    const gc = await invokePlugin(
      h.plugin,
      { command: "GC", path: h.cniPath, runIn: h.ns },
      h.weftConf("1.1.0", { "cni.dev/valid-attachments": [{ containerID: "gc-0", ifname: "eth0" }] }),
    );
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    // GC releases every attachment of this network not listed, whatever test left it behind.
    assert.equal(await allocations(), 1, "GC kept exactly the one valid attachment");
    // The kept pod is untouched; the collected ones lost their interface.
    assert.equal((await call("CHECK", "gc-0", pods[0].path, "1.1.0", { prevResult: results[0] })).code, 0);
    assert.deepEqual(await addressesIn(pods[0].path, "eth0"), resultAddresses(results[0]));
    for (const p of pods.slice(1)) {
      const links = JSON.parse(await run(["ip", "-j", "link", "show"], { netns: p.path })) as Array<{ ifname: string }>;
      assert.deepEqual(
        links.map((l) => l.ifname),
        ["lo"],
        "GC removed the collected pod's interface",
      );
    }
    // DEL after GC is still fine (the runtime may race GC).
    for (const [i, p] of pods.entries()) assert.equal((await call("DEL", `gc-${i}`, p.path, "1.1.0")).code, 0);
    assert.equal(await allocations(), 0);
    assert.equal((await h.ipamCheck()).code, 0);
  });

  test("STATUS: ready with the agent up, code 50 with it down, ready again after restart", async () => {
    const status = () =>
      invokePlugin(h.plugin, { command: "STATUS", path: h.cniPath, runIn: h.ns }, h.weftConf("1.1.0"));
    const up = await status();
    assert.equal(up.code, 0, up.stdout + up.stderr);
    await h.stopAgent();
    try {
      const down = await status();
      assert.notEqual(down.code, 0);
      assert.equal(assertCniError(down.json, "STATUS").code, 50);
      // ADD while the agent is down fails cleanly too.
      const pod = await h.pod("s");
      const add = await call("ADD", "while-down", pod.path, "1.0.0");
      assert.notEqual(add.code, 0);
      assertCniError(add.json, "ADD with agent down");
    } finally {
      await h.startAgent();
    }
    const again = await status();
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal((await h.ipamCheck()).code, 0);
  });
});
