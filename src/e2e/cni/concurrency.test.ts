// Many ADDs at once, and an agent crash (kill -9) in the middle of a burst: addresses stay unique
// and nothing leaks, as `weft ipam check` and the pods' own interfaces show.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { invokePlugin, resultAddresses, type PluginOutput } from "../../testlib/plugin.js";
import { addressesIn, e2eSkipReason, Host, inCidr4, k8sArgs, sleep } from "./fixture.js";

const skip = e2eSkipReason() ?? false;

describe("concurrent ADDs and agent crashes", { skip }, () => {
  let h: Host;
  before(async () => {
    h = await Host.open({ podCidr: "10.245.0.0/22" });
  });
  after(async () => {
    await h?.close();
  });

  const call = (command: "ADD" | "DEL", id: string, netns: string): Promise<PluginOutput> =>
    invokePlugin(
      h.plugin,
      {
        command,
        containerId: id,
        netns,
        ifname: "eth0",
        args: k8sArgs(id),
        path: h.cniPath,
        runIn: h.ns,
        timeoutSec: 120,
      },
      h.weftConf("1.0.0"),
    );

  test("100 concurrent ADDs get 100 distinct addresses, each on its pod's eth0", async () => {
    const n = 100;
    const linksBefore = await h.hostLinks();
    const pods = await Promise.all(Array.from({ length: n }, () => h.pod("c")));
    const outs = await Promise.all(pods.map((p, i) => call("ADD", `conc-${i}`, p.path)));
    const failed = outs.map((o, i) => [i, o] as const).filter(([, o]) => o.code !== 0);
    assert.deepEqual(
      failed.map(([i, o]) => `${i}: ${o.stdout}${o.stderr}`),
      [],
      "every ADD succeeds",
    );
    const addrs = outs.map((o) => resultAddresses(o.json)[0]);
    assert.equal(new Set(addrs).size, n, "no address handed out twice");
    for (const a of addrs) assert.ok(inCidr4(a, h.podCidr), `${a} outside ${h.podCidr}`);
    const onIfaces = await Promise.all(pods.map((p) => addressesIn(p.path, "eth0")));
    assert.deepEqual(
      onIfaces,
      addrs.map((a) => [a]),
      "each pod carries exactly the address its result names",
    );
    const chk = await h.ipamCheck();
    assert.equal(chk.code, 0, JSON.stringify(chk.report));
    assert.equal(chk.report.allocations, n);

    const dels = await Promise.all(pods.map((p, i) => call("DEL", `conc-${i}`, p.path)));
    assert.deepEqual(
      dels.filter((d) => d.code !== 0).map((d) => d.stdout),
      [],
    );
    const end = await h.ipamCheck();
    assert.equal(end.code, 0);
    assert.equal(end.report.allocations, 0);
    assert.deepEqual(await h.hostLinks(), linksBefore, "no host links left");
  });

  test("kill -9 of the agent during a burst of ADDs: after restart and DEL of all, no duplicates, no leaks", async (t) => {
    const n = 60;
    const linksBefore = await h.hostLinks();
    const pods = await Promise.all(Array.from({ length: n }, () => h.pod("k")));
    let done = 0;
    const burst = pods.map((p, i) =>
      call("ADD", `crash-${i}`, p.path).then((o) => {
        done++;
        return o;
      }),
    );
    // Crash once part of the burst has been answered, so some ADDs are done, some in flight,
    // some not yet started.
    while (done < 10) await sleep(5);
    await h.stopAgent("SIGKILL");
    const outs = await Promise.all(burst);
    const ok = outs.map((o, i) => ({ o, i })).filter(({ o }) => o.code === 0);
    const bad = outs.map((o, i) => ({ o, i })).filter(({ o }) => o.code !== 0);
    t.diagnostic(`${ok.length} ADDs succeeded, ${bad.length} failed around the crash`);
    assert.ok(ok.length >= 10, "the ADDs answered before the crash succeeded");
    assert.ok(bad.length > 0, "the crash happened mid-burst (some ADDs failed)");
    for (const { o } of bad)
      assert.ok(
        (o.json as { code?: number } | undefined)?.code,
        `failed ADD printed a CNI error: ${o.stdout}${o.stderr}`,
      );

    await h.startAgent();
    // What a runtime does after a failed ADD: DEL it, then retry the ADD.
    for (const { i } of bad) assert.equal((await call("DEL", `crash-${i}`, pods[i].path)).code, 0);
    const retried = await Promise.all(bad.map(({ i }) => call("ADD", `crash-${i}`, pods[i].path)));
    assert.deepEqual(
      retried.filter((r) => r.code !== 0).map((r) => r.stdout),
      [],
      "retried ADDs succeed",
    );

    // Every pod now has exactly one address, all distinct, and the agent's records agree.
    const onIfaces = await Promise.all(pods.map((p) => addressesIn(p.path, "eth0")));
    for (const [i, a] of onIfaces.entries()) assert.equal(a.length, 1, `pod ${i} has ${JSON.stringify(a)}`);
    const all = onIfaces.map((a) => a[0]);
    assert.equal(new Set(all).size, n, `an address was given twice: ${all.join(" ")}`);
    const mid = await h.ipamCheck();
    assert.equal(mid.code, 0, JSON.stringify(mid.report));
    assert.equal(mid.report.allocations, n);

    const dels = await Promise.all(pods.map((p, i) => call("DEL", `crash-${i}`, p.path)));
    assert.deepEqual(
      dels.filter((d) => d.code !== 0).map((d) => d.stdout),
      [],
    );
    const end = await h.ipamCheck();
    assert.equal(end.code, 0, JSON.stringify(end.report));
    assert.equal(end.report.allocations, 0, "no address leaked");
    assert.deepEqual(await h.hostLinks(), linksBefore, "no host links leaked");
  });
});
