// The bgp backend as a user checks it: `weft lab up --nodes 3 --backend bgp --dual-stack`, every
// node's kernel holding every other node's pod CIDRs learnt by BIRD (proto bird, via that node),
// no route of weft's own, the all-pairs matrix connected; then a probe every 10 ms from a pod on
// n1 to a pod on n2 while n2's agent is killed -9 and restarted, and while n2's BIRD is killed -9
// (the agent starts it again in graceful-restart recovery): not one probe lost. `lab down` ends
// every BIRD by its PID.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ClusterLab, skipReason, sleep, unconnected } from "./fixture.js";

const skip = skipReason();
const UP = ["--nodes", "3", "--backend", "bgp", "--dual-stack"];
const PODS = [
  { name: "a", node: "n1" },
  { name: "b", node: "n2" },
  { name: "c", node: "n3" },
];
const KEYS = PODS.map((p) => `default/${p.name}`).sort();

const birdPidfile = (lab: ClusterLab, node: string): string => join(lab.dir, node, "state", "bird", "bird.pid");
const birdPid = (lab: ClusterLab, node: string): number => Number(readFileSync(birdPidfile(lab, node), "utf8").trim());
const alive = (pid: number): boolean => {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^[ZX]$/.test(st.slice(st.lastIndexOf(")") + 2).split(" ")[0]);
  } catch {
    return false;
  }
};

describe("backend bgp: 3 nodes, dual-stack, BIRD per node", { skip, timeout: 300_000 }, () => {
  const lab = new ClusterLab();
  const want: { node: string; dst: string; via: string; family: 4 | 6 }[] = [];

  /** Each node's proto bird routes match `want` (every other node's CIDRs via its address). */
  const missingRoutes = async (): Promise<string[]> => {
    const missing: string[] = [];
    for (const n of ["n1", "n2", "n3"]) {
      for (const fam of [4, 6] as const) {
        const have = (await lab.routes(n, fam)) as { dst: string; gateway?: string; protocol?: string }[];
        for (const w of want.filter((x) => x.node !== n && x.family === fam)) {
          const r = have.find((x) => x.dst === w.dst);
          if (!r || r.gateway !== w.via || r.protocol !== "bird")
            missing.push(`${n}: ${w.dst} via ${w.via} proto bird (have ${JSON.stringify(r ?? null)})`);
        }
      }
    }
    return missing;
  };

  before(async () => {
    await lab.up(UP);
    await lab.applyPods(PODS);
    await lab.waitRunning(KEYS);
    for (const n of await lab.nodes()) {
      const addrs = (n.status?.addresses ?? []).filter((a) => a.type === "InternalIP").map((a) => a.address);
      for (const dst of n.spec?.podCIDRs ?? []) {
        const family = dst.includes(":") ? 6 : 4;
        const via = addrs.find((a) => a.includes(":") === (family === 6));
        assert.ok(via, `${n.metadata.name} has an IPv${family} InternalIP`);
        want.push({ node: n.metadata.name, dst, via, family });
      }
    }
    assert.equal(want.length, 6);
    const until = Date.now() + 30_000;
    let missing = await missingRoutes();
    while (missing.length && Date.now() < until) {
      await sleep(200);
      missing = await missingRoutes();
    }
    assert.deepEqual(missing, [], "routes learnt by BIRD");
  });
  after(async () => {
    const pids = ["n1", "n2", "n3"].filter((n) => existsSync(birdPidfile(lab, n))).map((n) => birdPid(lab, n));
    await lab.down();
    assert.deepEqual(
      pids.filter((p) => alive(p)),
      [],
      "lab down ended every BIRD",
    );
  });

  test("every node has every other node's pod CIDRs from BIRD (proto bird, via that node); weft installed none itself", async () => {
    assert.deepEqual(await missingRoutes(), []);
    for (const n of ["n1", "n2", "n3"])
      for (const fam of [4, 6] as const) {
        const weftRoutes = (await lab.routes(n, fam)).filter((r) => (r as { protocol?: string }).protocol === "230");
        assert.deepEqual(weftRoutes, [], `${n} has no weft (proto 230) route`);
      }
  });

  test("weft status lists each node's BGP sessions, one per peer and family, all Established", async () => {
    type S = { nodes: { name: string; sessions?: { peer: string; address: string; state: string }[] }[] };
    const sessions = async () =>
      (JSON.parse(await lab.weftOk(["status", "-o", "json"])) as S).nodes.flatMap((n) =>
        (n.sessions ?? []).map((x) => `${n.name}->${x.peer} ${x.address} ${x.state}`),
      );
    // Published at the agents' next sync (every 10 s) after the sessions came up.
    const until = Date.now() + 40_000;
    let got = await sessions();
    while (Date.now() < until && (got.length !== 12 || !got.every((x) => x.endsWith(" Established")))) {
      await sleep(500);
      got = await sessions();
    }
    assert.equal(got.length, 12, got.join("\n"));
    assert.ok(
      got.every((x) => x.endsWith(" Established")),
      got.join("\n"),
    );
    const text = await lab.weftOk(["status"]);
    assert.match(text, /NODE\s+BGP PEER\s+ADDRESS\s+STATE/);
  });

  for (const family of [4, 6] as const) {
    test(`the all-pairs matrix over IPv${family} is connected`, async () => {
      const m = await lab.matrix(["--port", "80", "--family", String(family)]);
      assert.deepEqual(unconnected(m.matrix), []);
    });
  }

  /** Pings pod b from pod a every 10 ms, `count` times; resolves with what ping counted. */
  const probe = async (count: number) => {
    const b = await lab.pod("default", "b");
    const to = (b.status?.podIPs ?? []).map((x) => x.ip).find((ip) => !ip.includes(":"));
    assert.ok(to, "pod b has an IPv4 address");
    const run = lab.spawnWeft([
      "lab",
      "exec",
      "default/a",
      "--",
      "busybox",
      "ping",
      "-i",
      "0.01",
      "-c",
      String(count),
      to,
    ]);
    return async () => {
      const r = await run.done;
      const m = /(\d+) packets transmitted, (\d+) packets received/.exec(r.stdout);
      assert.ok(m, `ping summary missing: ${r.stdout.slice(-300)} ${r.stderr.slice(-300)}`);
      return { sent: Number(m[1]), lost: Number(m[1]) - Number(m[2]) };
    };
  };

  test("kill -9 of n2's agent and its restart: BIRD keeps running (same PID), not one probe every 10 ms lost", async () => {
    const bird = birdPid(lab, "n2");
    const oldAgent = lab.agentPid("n2");
    const done = await probe(800);
    await sleep(1500);
    process.kill(oldAgent, "SIGKILL");
    await sleep(1000);
    await lab.up(UP); // starts n2's agent again
    assert.notEqual(lab.agentPid("n2"), oldAgent);
    const { sent, lost } = await done();
    console.log(`# agent kill -9 + restart: ${lost} of ${sent} probes lost`);
    assert.equal(lost, 0, `${lost} of ${sent} lost`);
    assert.equal(birdPid(lab, "n2"), bird, "the restarted agent adopted BIRD rather than restarting it");
    assert.ok(alive(bird));
    assert.deepEqual(await missingRoutes(), []);
  });

  test("kill -9 of n2's BIRD: the agent starts it again (graceful restart, persist) and not one probe every 10 ms is lost", async () => {
    const old = birdPid(lab, "n2");
    // The agent's periodic sync (10 s) notices; the probe runs past it.
    const done = await probe(2000);
    await sleep(1500);
    process.kill(old, "SIGKILL");
    const { sent, lost } = await done();
    console.log(`# BIRD kill -9, restarted by the agent: ${lost} of ${sent} probes lost`);
    assert.equal(lost, 0, `${lost} of ${sent} lost`);
    const until = Date.now() + 20_000;
    while (
      Date.now() < until &&
      (!existsSync(birdPidfile(lab, "n2")) || birdPid(lab, "n2") === old || !alive(birdPid(lab, "n2")))
    )
      await sleep(200);
    assert.notEqual(birdPid(lab, "n2"), old, "the agent started a new BIRD");
    assert.ok(alive(birdPid(lab, "n2")));
    assert.match(lab.agentLog("n2"), /graceful-restart recovery/);
    const until2 = Date.now() + 30_000;
    while (Date.now() < until2 && (await missingRoutes()).length) await sleep(200);
    assert.deepEqual(await missingRoutes(), []);
  });
});
