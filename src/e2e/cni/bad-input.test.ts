// Bad input to the plugin is refused with a CNI error on stdout and leaves nothing behind:
// no links in the host netns or the pod, no address allocated.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { run } from "../../kernel/exec.js";
import { invokePlugin, type CniErrorOut, type PluginCall } from "../../testlib/plugin.js";
import { e2eSkipReason, Host, k8sArgs, linksIn } from "./fixture.js";

const skip = e2eSkipReason() ?? false;

describe("bad input leaves nothing behind", { skip }, () => {
  let h: Host;
  before(async () => {
    h = await Host.open({ podCidr: "10.249.0.0/24" });
  });
  after(async () => {
    await h?.close();
  });

  interface Case {
    what: string;
    /** Changes to the runtime call (env) for this case. */
    call?: (pod: string) => Partial<PluginCall> & { unset?: Array<keyof PluginCall> };
    /** The config on stdin (object or raw text). */
    conf?: () => unknown;
    /** Prepares the pod netns (e.g. an interface already named eth0). */
    prep?: (pod: string) => Promise<void>;
    /** Expected CNI error code, when the spec names one. */
    code?: number;
  }

  const cases: Case[] = [
    { what: "stdin is not JSON", conf: () => "{not json", code: 6 },
    { what: "unsupported cniVersion", conf: () => h.weftConf("9.9.9"), code: 1 },
    { what: "CNI_NETNS missing on ADD", call: () => ({ unset: ["netns"] }) },
    { what: "CNI_NETNS is not a namespace", call: () => ({ netns: "/run/netns/wt-does-not-exist" }) },
    { what: "CNI_NETNS is a file but not a namespace", call: () => ({ netns: "/etc/hostname" }) },
    { what: "CNI_CONTAINERID missing", call: () => ({ unset: ["containerId"] }) },
    { what: "CNI_IFNAME too long", call: () => ({ ifname: "eth0-much-too-long" }) },
    { what: "CNI_IFNAME with a slash", call: () => ({ ifname: "eth/0" }) },
    {
      what: "agent socket that does not exist",
      conf: () => h.weftConf("1.0.0", { socket: "/run/wt-no-such/weft.sock" }),
    },
    {
      what: "delegated IPAM plugin not in CNI_PATH",
      conf: () => h.weftConf("1.0.0", { ipam: { type: "no-such-ipam" } }),
    },
    {
      what: "delegated host-local with a bad subnet",
      conf: () => h.weftConf("1.0.0", { ipam: { type: "host-local", subnet: "10.1.2.300/24" } }),
    },
    {
      what: "eth0 already exists in the pod (fails after kernel work began: must roll back)",
      prep: async (pod) => {
        await run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"], { netns: pod });
      },
    },
  ];

  for (const c of cases) {
    test(`ADD refused: ${c.what}`, async () => {
      const linksBefore = await h.hostLinks();
      const before = await h.ipamCheck();
      const pod = await h.pod("b");
      await c.prep?.(pod.path);
      const podLinksBefore = await linksIn(pod.path);
      const over = c.call?.(pod.path) ?? {};
      const call: PluginCall = {
        command: "ADD",
        containerId: "bad-1",
        netns: pod.path,
        ifname: "eth0",
        args: k8sArgs("bad-1"),
        path: h.cniPath,
        runIn: h.ns,
        ...over,
      };
      for (const k of over.unset ?? []) delete call[k];
      delete (call as { unset?: unknown }).unset;
      const r = await invokePlugin(h.plugin, call, (c.conf ?? (() => h.weftConf("1.0.0")))());
      assert.notEqual(r.code, 0, `ADD succeeded: ${r.stdout}`);
      const err = r.json as CniErrorOut | undefined;
      assert.ok(
        err && typeof err.code === "number" && typeof err.msg === "string" && err.msg.length > 0,
        `expected a CNI error on stdout, got: ${r.stdout}${r.stderr}`,
      );
      if (c.code !== undefined) assert.equal(err.code, c.code, err.msg);
      assert.deepEqual(await h.hostLinks(), linksBefore, "no link left in the host netns");
      assert.deepEqual(await linksIn(pod.path), podLinksBefore, "pod netns as before");
      const after = await h.ipamCheck();
      assert.equal(after.code, 0, JSON.stringify(after.report));
      assert.equal(after.report.allocations, before.report.allocations, "no address allocated");
    });
  }

  test("unknown CNI_COMMAND is refused", async () => {
    const pod = await h.pod("u");
    const r = await invokePlugin(
      h.plugin,
      { command: "FROB" as "ADD", containerId: "x", netns: pod.path, ifname: "eth0", runIn: h.ns },
      h.weftConf("1.0.0"),
    );
    assert.notEqual(r.code, 0);
    assert.equal(typeof (r.json as CniErrorOut | undefined)?.code, "number", r.stdout + r.stderr);
  });
});
