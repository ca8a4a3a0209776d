// kill -9 of the agent at seeded random moments while 100 pods churn through ADD and DEL, driven
// as a runtime drives the plugin (env + stdin to the installed binary; a failed ADD is torn down
// with DEL and tried again, as kubelet does with a sandbox). At the end, checked from the kernel
// and the store: no address was given twice (no two pods carry the same IP), and after one more
// crash and a DEL of everything, nothing leaked (ipam check clean, IPAM store empty), no weft veth
// is left in the node namespace, and no nft element of a deleted pod remains.
//
// WEFT_FAULTS_SEED=N reruns a schedule (kill delays, downtimes, churn pauses); the interleaving
// with the kernel and the scheduler is of course not reproducible, the schedule is.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../../testlib/fuzz.js";
import { startTestAgent } from "../../testlib/agent.js";
import { globalAddresses, ipamStoreRows, nftElements, specError } from "../../testlib/faults.js";
import { weftLinks, type TestNetns } from "../../testlib/netns.js";
import { invokePlugin, resultAddresses, type PluginOutput } from "../../testlib/plugin.js";
import { e2eSkipReason, Host, inCidr4, k8sArgs, linksIn, sleep, weft } from "./fixture.js";

const skip = e2eSkipReason() ?? false;

const SEED = Number(process.env.WEFT_FAULTS_SEED ?? 20261207);
const PODS = 100;
const KILLS = Number(process.env.WEFT_FAULTS_KILLS ?? 20);

interface Figures {
  seed: number;
  pods: number;
  kills: number;
  inFlightAtKill: number[];
  restartMs: number[];
  addsOk: number;
  addAttempts: number;
  delsOk: number;
  delAttempts: number;
  /** Failed attempts by CNI error code. */
  failureCodes: Record<string, number>;
  ms: number;
}

describe("agent kill -9 during concurrent ADD/DEL", { skip }, () => {
  let h: Host;
  before(async () => {
    h = await Host.open({ podCidr: "10.248.0.0/22" });
    // A policy selecting every pod of "default": each pod then has elements in the node's ruleset,
    // so "no element left for a deleted pod" checks something.
    const pol = join(h.work, "policy.json");
    writeFileSync(
      pol,
      JSON.stringify({
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: { name: "same-namespace", namespace: "default" },
        spec: { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] },
      }),
    );
    const r = await weft(["apply", "-f", pol, "--store", "local", "--state-dir", h.stateDir]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await h?.close();
  });

  test(
    `${KILLS} kills (seed ${SEED}) during churn of ${PODS} pods: no duplicate address, no leak, no orphan`,
    { timeout: 900_000 },
    async (t) => {
      const rng = new Rng(SEED);
      const fig: Figures = {
        seed: SEED,
        pods: PODS,
        kills: 0,
        inFlightAtKill: [],
        restartMs: [],
        addsOk: 0,
        addAttempts: 0,
        delsOk: 0,
        delAttempts: 0,
        failureCodes: {},
        ms: 0,
      };
      const problems: string[] = [];
      const hostLinksBefore = await h.hostLinks();
      const pods: TestNetns[] = await Promise.all(Array.from({ length: PODS }, () => h.pod("kp")));
      let inFlight = 0;

      const call = async (command: "ADD" | "DEL", id: string, p: TestNetns): Promise<PluginOutput> => {
        inFlight++;
        try {
          return await invokePlugin(
            h.plugin,
            {
              command,
              containerId: id,
              netns: p.path,
              ifname: "eth0",
              args: k8sArgs(id),
              path: h.cniPath,
              runIn: h.ns,
              timeoutSec: 120,
            },
            h.weftConf("1.0.0"),
          );
        } finally {
          inFlight--;
        }
      };
      const failed = (what: string, o: PluginOutput) => {
        const e = specError(o.stdout.trim());
        if (!e) problems.push(`${what}: exit ${o.code} without a CNI error: ${o.stdout}${o.stderr}`);
        const k = e ? String(e.code) : "none";
        fig.failureCodes[k] = (fig.failureCodes[k] ?? 0) + 1;
      };
      // Exponential backoff with jitter, as runtimes do: while the agent is down, 100 callers retrying
      // every few hundred ms (each starting the full plugin) would mostly slow its restart.
      const backoffMs = (attempt: number, r: Rng) => Math.min(2000, 100 * 2 ** Math.min(attempt - 1, 5)) + r.int(200);
      const del = async (id: string, p: TestNetns, backoff: Rng) => {
        for (let attempt = 1; ; attempt++) {
          if (aborted) throw aborted;
          fig.delAttempts++;
          const o = await call("DEL", id, p);
          if (o.code === 0) return void fig.delsOk++;
          failed(`DEL ${id}`, o);
          if (attempt >= 300) throw new Error(`DEL ${id} failed ${attempt} times: ${o.stdout}`);
          await sleep(backoffMs(attempt, backoff));
        }
      };
      // A runtime's ADD: on failure, tear the attempt down with DEL, back off, try again.
      const add = async (id: string, p: TestNetns, backoff: Rng): Promise<string> => {
        for (let attempt = 1; ; attempt++) {
          if (aborted) throw aborted;
          fig.addAttempts++;
          const o = await call("ADD", id, p);
          if (o.code === 0) {
            fig.addsOk++;
            return resultAddresses(o.json)[0];
          }
          failed(`ADD ${id}`, o);
          if (attempt >= 300) throw new Error(`ADD ${id} failed ${attempt} times: ${o.stdout}`);
          await del(id, p, backoff);
          await sleep(backoffMs(attempt, backoff));
        }
      };

      let killing = true;
      // A failed kill/restart ends the workers too (they would otherwise retry against no agent).
      let aborted: Error | undefined;
      const everAssigned = new Set<string>();
      const final: string[] = new Array<string>(PODS);
      const finalId: string[] = new Array<string>(PODS);
      const worker = async (i: number) => {
        const r = new Rng(SEED ^ (0x5f3759df + i));
        // Each cycle is a new sandbox (a new container ID), as when kubelet recreates a pod.
        for (let gen = 0; ; gen++) {
          const id = `k${i}g${gen}`;
          const a = await add(id, pods[i], r);
          everAssigned.add(a);
          if (!killing) {
            final[i] = a;
            finalId[i] = id;
            return;
          }
          await sleep(r.int(200));
          await del(id, pods[i], r);
          await sleep(r.int(200));
        }
      };

      const restart = async () => {
        const t0 = performance.now();
        h.agent = await startTestAgent({
          netns: h.ns,
          podCidr: h.podCidr,
          node: h.node,
          stateDir: h.stateDir,
          socket: h.socket,
          readyTimeoutMs: 120_000,
        });
        fig.restartMs.push(Math.round(performance.now() - t0));
      };
      const killer = async () => {
        try {
          for (let k = 0; k < KILLS; k++) {
            await sleep(50 + rng.int(1500));
            while (inFlight === 0) await sleep(2);
            fig.inFlightAtKill.push(inFlight);
            await h.stopAgent("SIGKILL");
            fig.kills++;
            await sleep(rng.int(300)); // downtime: calls meanwhile find no agent
            await restart();
          }
        } catch (e) {
          aborted = e as Error;
          throw e;
        } finally {
          killing = false;
        }
      };

      const t0 = performance.now();
      const workers = Promise.allSettled(pods.map((_, i) => worker(i)));
      await killer().catch(async (e: unknown) => {
        await workers;
        throw e;
      });
      for (const w of await workers) if (w.status === "rejected") throw w.reason;
      fig.ms = Math.round(performance.now() - t0);

      // Every pod is up: one address each on eth0, as the kernel shows it, no two alike.
      const onIfaces = await Promise.all(pods.map((p) => globalAddresses(p.path)));
      onIfaces.forEach((a, i) =>
        assert.deepEqual(a, [final[i]], `pod ${i} carries exactly the address of its last ADD`),
      );
      const live = onIfaces.map((a) => a[0]);
      assert.equal(new Set(live).size, PODS, `an address is on two pods: ${live.join(" ")}`);
      for (const a of live) assert.ok(inCidr4(a, h.podCidr), `${a} outside ${h.podCidr}`);
      const mid = await h.ipamCheck();
      assert.deepEqual(
        [mid.code, mid.report.allocations, mid.report.leaked, mid.report.conflicts],
        [0, PODS, [], []],
        JSON.stringify(mid.report),
      );
      const midElements = await nftElements(h.ns);
      for (const a of live)
        assert.ok(
          midElements.some((e) => e.includes(`"${a}"`)),
          `live pod ${a} has its policy element`,
        );

      // One more crash, with every pod wired: the restarted agent finds nothing to roll back.
      await h.stopAgent("SIGKILL");
      await restart();
      const afterRestart = await h.ipamCheck();
      assert.deepEqual(
        [afterRestart.code, afterRestart.report.allocations, afterRestart.report.leaked],
        [0, PODS, []],
        JSON.stringify(afterRestart.report),
      );

      // DEL of everything.
      await Promise.all(pods.map((p, i) => del(finalId[i], p, new Rng(i))));
      const end = await h.ipamCheck();
      assert.deepEqual(
        [end.code, end.report.allocations, end.report.leaked, end.report.conflicts],
        [0, 0, [], []],
        JSON.stringify(end.report),
      );
      assert.deepEqual(ipamStoreRows(h.stateDir), { attachments: [], addresses: 0 }, "IPAM store empty");
      assert.deepEqual(await weftLinks(h.netns), [], "no weft veth left in the node namespace");
      assert.deepEqual(await h.hostLinks(), hostLinksBefore, "node namespace links as before");
      for (const p of pods) assert.deepEqual(await linksIn(p.path), ["lo"], `${p.name}: only lo left`);
      const leftover = (await nftElements(h.ns)).filter(
        (e) => [...everAssigned].some((a) => e.includes(`"${a}"`)) || /wf[0-9a-f]{11}/.test(e),
      );
      assert.deepEqual(leftover, [], "no nft element of a deleted pod");

      t.diagnostic(`faults-kill: ${JSON.stringify(fig)}`);
      if (process.env.WEFT_FAULTS_OUT)
        writeFileSync(join(process.env.WEFT_FAULTS_OUT, "kill.json"), JSON.stringify(fig, null, 2));
      assert.deepEqual(problems, []);
      assert.ok(fig.kills >= KILLS, `${fig.kills} kills`);
    },
  );
});
