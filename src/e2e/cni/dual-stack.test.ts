// A dual-stack pod CIDR (--pod-cidr v4,v6): one address per family, each result version showing
// it in its own format, and pods reaching each other over both families.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { isIPv6 } from "node:net";
import { run, runStatus } from "../../kernel/exec.js";
import { invokePlugin, resultAddresses } from "../../testlib/plugin.js";
import { addressesIn, e2eSkipReason, Host, inCidr4, k8sArgs, ping, sleep } from "./fixture.js";

const skip = e2eSkipReason() ?? false;
const V4 = "10.252.0.0/24";
const V6 = "fd00:252::/64";

interface AnyResult {
  cniVersion: string;
  ips?: Array<{ version?: string; address: string; gateway?: string }>;
}

describe("dual-stack pods", { skip }, () => {
  let h: Host;
  before(async () => {
    h = await Host.open({ podCidr: `${V4},${V6}` });
  });
  after(async () => {
    await h?.close();
  });

  const call = (command: "ADD" | "DEL", id: string, netns: string, v: string) =>
    invokePlugin(
      h.plugin,
      { command, containerId: id, netns, ifname: "eth0", args: k8sArgs(id), path: h.cniPath, runIn: h.ns },
      h.weftConf(v),
    );

  for (const v of ["0.3.1", "1.0.0"]) {
    test(`cniVersion ${v}: one IPv4 and one IPv6 address, in ${v}'s format, both on eth0`, async () => {
      const pod = await h.pod("d");
      const r = await call("ADD", `ds-${v}`, pod.path, v);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const ips = (r.json as AnyResult).ips ?? [];
      const v4 = ips.filter((i) => !isIPv6(i.address.split("/")[0]));
      const v6 = ips.filter((i) => isIPv6(i.address.split("/")[0]));
      assert.equal(v4.length, 1, JSON.stringify(ips));
      assert.equal(v6.length, 1, JSON.stringify(ips));
      assert.ok(inCidr4(v4[0].address.split("/")[0], V4));
      assert.ok(v6[0].address.startsWith("fd00:252:"), `${v6[0].address} not in ${V6}`);
      if (v === "0.3.1") {
        assert.equal(v4[0].version, "4");
        assert.equal(v6[0].version, "6");
      } else {
        for (const i of ips) assert.ok(!("version" in i));
      }
      assert.deepEqual((await addressesIn(pod.path, "eth0")).sort(), resultAddresses(r.json).sort());
      assert.equal((await call("DEL", `ds-${v}`, pod.path, v)).code, 0);
    });
  }

  test("two dual-stack pods reach each other over IPv4 and IPv6", async () => {
    const a = await h.pod("a");
    const b = await h.pod("b");
    const ra = await call("ADD", "ds-a", a.path, "1.0.0");
    const rb = await call("ADD", "ds-b", b.path, "1.0.0");
    assert.equal(ra.code, 0, ra.stdout);
    assert.equal(rb.code, 0, rb.stdout);
    const b4 = resultAddresses(rb.json).find((x) => !isIPv6(x))!;
    const b6 = resultAddresses(rb.json).find((x) => isIPv6(x))!;
    assert.ok(await ping(a.path, b4), `IPv4 ${b4} unreachable`);
    // IPv6 addresses may still be in duplicate address detection just after ADD; wait until
    // neither pod has a tentative address before judging reachability.
    for (let i = 0; i < 50; i++) {
      const t =
        (await run(["ip", "-6", "addr", "show", "tentative"], { netns: a.path })) +
        (await run(["ip", "-6", "addr", "show", "tentative"], { netns: b.path }));
      if (!t.trim()) break;
      await sleep(100);
    }
    const p6 = await runStatus(["busybox", "ping", "-6", "-c", "1", "-W", "2", b6], { netns: a.path });
    assert.equal(p6.code, 0, `IPv6 ${b6} unreachable: ${p6.stdout}${p6.stderr}`);
    assert.equal((await call("DEL", "ds-a", a.path, "1.0.0")).code, 0);
    assert.equal((await call("DEL", "ds-b", b.path, "1.0.0")).code, 0);
    const end = await h.ipamCheck();
    assert.equal(end.code, 0);
    assert.equal(end.report.allocations, 0);
  });
});
