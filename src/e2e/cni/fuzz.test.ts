// Malformed input, at volume: seeded cases from src/testlib/fuzz.ts (mutated JSON-line requests,
// broken WEFTCNI1 frames, mutated runtime calls) go to a real agent's socket from this process,
// and a seeded subset of the runtime calls is exec'd through the installed plugin binary (the
// native forwarder, which falls back to the full plugin). The agent must never crash (the same PID
// answers STATUS at the end), every answer must be a well-formed error with a sensible code (or a
// success, for the rare mutation that is still a valid call), and nothing may be left behind.
//
// Rerun a run with WEFT_FUZZ_SEED=N (and WEFT_FUZZ_CASES=M); a failure names its case index, and
// `fuzzCase(seed, index, ctx)` rebuilds that case alone.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { caseDigest, encodeFrameBytes, fuzzCase, type FuzzCase, type FuzzContext } from "../../testlib/fuzz.js";
import {
  decodeAnswer,
  decodeFrameRequest,
  execPlugin,
  ipamStoreRows,
  nftElements,
  rawExchange,
  specError,
} from "../../testlib/faults.js";
import type { TestNetns } from "../../testlib/netns.js";
import { weftLinks } from "../../testlib/netns.js";
import { e2eSkipReason, Host, linksIn } from "./fixture.js";

const skip = e2eSkipReason() ?? false;

const SEED = Number(process.env.WEFT_FUZZ_SEED ?? 20261207);
const TOTAL = Number(process.env.WEFT_FUZZ_CASES ?? 10_000);
/** Runtime calls whose index is a multiple of this are exec'd through the real plugin binary. */
const EXEC_EVERY = Number(process.env.WEFT_FUZZ_EXEC_EVERY ?? 10);
const CONCURRENCY = 6;
/** Codes a malformed call may be answered with: the spec's (1-7, 11, 50) and weft's "exists/conflict/check" (100, 101, 103, 104). */
const SENSIBLE = new Set([1, 2, 3, 4, 5, 6, 7, 11, 50, 100, 101, 103, 104]);

interface Tally {
  cases: number;
  line: number;
  frame: number;
  viaSocket: number;
  viaExec: number;
  rejected: number;
  accepted: number;
  acceptedAdds: number;
  codes: Record<string, number>;
  problems: string[];
  ms: number;
}

describe("malformed input to the agent socket and the plugin", { skip }, () => {
  let h: Host;
  let pod: TestNetns;
  let ctx: FuzzContext;
  before(async () => {
    h = await Host.open({ podCidr: "10.247.0.0/24" });
    pod = await h.pod("fz");
    const cniPath = join(h.work, "fuzz-cni-path"); // no IPAM plugin in it: a delegation never runs a real one
    mkdirSync(cniPath, { recursive: true });
    ctx = { socket: h.socket, podNetns: pod.path, network: h.name, cniPath };
  });
  after(async () => {
    await h?.close();
  });

  test(
    `${TOTAL} seeded cases (seed ${SEED}): no crash, only well-formed errors, nothing left behind`,
    { timeout: 600_000 },
    async (t) => {
      const pid = h.agent!.pid;
      const hostLinksBefore = await h.hostLinks();
      const podLinksBefore = await linksIn(pod.path);
      const tally: Tally = {
        cases: 0,
        line: 0,
        frame: 0,
        viaSocket: 0,
        viaExec: 0,
        rejected: 0,
        accepted: 0,
        acceptedAdds: 0,
        codes: {},
        problems: [],
        ms: 0,
      };
      const problem = (c: FuzzCase, msg: string) => {
        if (tally.problems.length < 50)
          tally.problems.push(`case ${c.index} [${caseDigest(c)}] ${c.kind} (${c.what}): ${msg}`);
      };
      const code = (c: number, msg: string) => {
        tally.codes[c] = (tally.codes[c] ?? 0) + 1;
        // 102 (kernel failure) only for the one kernel refusal a valid-looking ADD can meet here:
        // several cases share one pod namespace, so its eth0 may exist (a concurrent case's).
        return SENSIBLE.has(c) || (c === 102 && /already exists|File exists/.test(msg));
      };

      /** A call that was valid after all made a pod: remove it the way a runtime would. */
      const undoAdd = async (c: FuzzCase, key: { network: unknown; containerId: unknown; ifname: unknown }) => {
        tally.acceptedAdds++;
        const del = Buffer.from(JSON.stringify({ op: "del", ...key }) + "\n");
        const d = decodeAnswer((await rawExchange(h.socket, del, 60_000)).bytes);
        if (d.kind !== "json" || (d.value as { ok?: unknown }).ok !== true)
          problem(c, `cleanup DEL of an accepted ADD failed: ${JSON.stringify(d)}`);
      };
      const keyOfCall = (env: Record<string, string>, stdin: Buffer) => {
        let name: unknown;
        try {
          name = (JSON.parse(stdin.toString("utf8")) as { name?: unknown }).name;
        } catch {
          name = undefined;
        }
        return { network: name, containerId: env.CNI_CONTAINERID, ifname: env.CNI_IFNAME };
      };

      const runCase = async (c: FuzzCase) => {
        tally.cases++;
        if (c.kind === "plugin" && c.index % EXEC_EVERY === 0) {
          tally.viaExec++;
          const r = await execPlugin(h.plugin, c.env, c.stdin, h.ns);
          if (r.code === 0) {
            tally.accepted++;
            if (c.env.CNI_COMMAND === "ADD") await undoAdd(c, keyOfCall(c.env, c.stdin));
            return;
          }
          tally.rejected++;
          const e = specError(r.stdout);
          if (!e)
            return problem(
              c,
              `exit ${r.code} without a CNI error on stdout: ${JSON.stringify(r.stdout.slice(0, 300))} stderr ${JSON.stringify(r.stderr.slice(0, 300))}`,
            );
          if (!code(e.code, e.msg)) problem(c, `code ${e.code}: ${e.msg}`);
          return;
        }
        tally.viaSocket++;
        if (c.kind === "line") tally.line++;
        if (c.kind === "frame") tally.frame++;
        const bytes = c.kind === "plugin" ? encodeFrameBytes(c.env, c.stdin) : c.bytes;
        const ans = await rawExchange(h.socket, bytes, 60_000);
        if (!ans.closed) return problem(c, "no answer within 60 s");
        const d = decodeAnswer(ans.bytes);
        if (d.kind === "garbage") return problem(c, d.why);
        if (d.kind === "json") {
          // The agent's own protocol: {ok:true,...} or {ok:false, code, msg}.
          const v = d.value as { ok?: unknown; code?: unknown; msg?: unknown } | null;
          if (v?.ok === true) {
            tally.accepted++;
            if (c.kind === "line") {
              const req = JSON.parse(c.bytes.toString("utf8").split("\n")[0]) as {
                op?: string;
                network?: unknown;
                containerId?: unknown;
                ifname?: unknown;
              };
              if (req.op === "add")
                await undoAdd(c, { network: req.network, containerId: req.containerId, ifname: req.ifname });
            } else problem(c, `a frame was answered with a JSON success: ${JSON.stringify(v)}`);
            return;
          }
          tally.rejected++;
          if (v?.ok !== false || typeof v.code !== "number" || typeof v.msg !== "string" || !v.msg)
            return problem(c, `malformed answer ${JSON.stringify(v).slice(0, 300)}`);
          if (!code(v.code, v.msg)) problem(c, `code ${v.code}: ${v.msg}`);
          return;
        }
        // A frame answer: the plugin's exit code and stdout, exactly what the runtime would get.
        if (d.exitCode === 0) {
          tally.accepted++;
          const call = decodeFrameRequest(bytes);
          if (call?.env.CNI_COMMAND === "ADD") await undoAdd(c, keyOfCall(call.env, call.stdin));
          return;
        }
        tally.rejected++;
        const e = specError(d.stdout.trim());
        if (!e) return problem(c, `exit ${d.exitCode} without a CNI error: ${JSON.stringify(d.stdout.slice(0, 300))}`);
        if (!code(e.code, e.msg)) problem(c, `code ${e.code}: ${e.msg}`);
      };

      const alive = async (when: string) => {
        assert.equal(h.agent?.pid, pid);
        assert.doesNotThrow(() => process.kill(pid, 0), `agent PID ${pid} is gone (${when})`);
        const st = decodeAnswer(
          (await rawExchange(h.socket, Buffer.from('{"op":"status","network":""}\n'), 30_000)).bytes,
        );
        assert.deepEqual(st, { kind: "json", value: { ok: true } }, `STATUS ${when}`);
      };

      const t0 = performance.now();
      let next = 0;
      const worker = async () => {
        for (;;) {
          const i = next++;
          if (i >= TOTAL) return;
          const c = fuzzCase(SEED, i, ctx);
          try {
            await runCase(c);
          } catch (e) {
            problem(c, `test-side error: ${e instanceof Error ? e.message : String(e)}`);
          }
          if (i % 2000 === 1999) await alive(`after case ${i}`);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      tally.ms = Math.round(performance.now() - t0);

      // The same agent process answers, and logged nothing fatal.
      await alive("at the end");
      assert.ok(!h.agent!.logs().includes('"level":60'), "the agent logged a fatal error");

      // Nothing left behind: no links in the node or the pod, no IPAM rows, no policy elements.
      const check = await h.ipamCheck();
      assert.equal(check.code, 0, JSON.stringify(check.report));
      assert.equal(check.report.allocations, 0, "no address allocated");
      assert.deepEqual(ipamStoreRows(h.stateDir), { attachments: [], addresses: 0 }, "IPAM store empty");
      assert.deepEqual(await weftLinks(h.netns), [], "no weft veth in the node namespace");
      assert.deepEqual(await h.hostLinks(), hostLinksBefore, "node namespace links as before");
      assert.deepEqual(await linksIn(pod.path), podLinksBefore, "pod namespace links as before");
      assert.deepEqual(await nftElements(h.ns), [], "no nft elements left");

      const summary = { seed: SEED, ...tally, problems: tally.problems.length };
      t.diagnostic(`fuzz: ${JSON.stringify(summary)}`);
      if (process.env.WEFT_FAULTS_OUT)
        writeFileSync(join(process.env.WEFT_FAULTS_OUT, "fuzz.json"), JSON.stringify(summary, null, 2));
      assert.deepEqual(tally.problems, [], `${tally.problems.length} problem(s)`);
      assert.equal(tally.cases, TOTAL);
    },
  );
});
