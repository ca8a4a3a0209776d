// Restarts and crashes: the agent is stopped (SIGTERM) or killed (SIGKILL) by PID, possibly in the
// middle of ADDs, and started again on the same state. Running pods must not notice; half-made
// ADDs are rolled back; no address is ever given twice; nothing leaks.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { AgentResponse, IpamCheckReport } from "../agent-api/schema.js";
import type { Result } from "../cni/types.js";
import { startTestAgent, type TestAgent } from "../testlib/agent.js";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { runStatus } from "../kernel/exec.js";
import {
  createNetns,
  globalAddrs,
  linkAddr,
  ping,
  removeAllNetns,
  type TestNetns,
  weftLinks,
} from "../testlib/netns.js";

after(removeAllNetns);

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");

let seq = 0;
const cid = () => `k${process.pid}x${++seq}`;
const addReq = (containerId: string, ns: TestNetns) => ({
  op: "add",
  network: "weft",
  containerId,
  netns: ns.path,
  ifname: "eth0",
  args: {},
});
const v4of = (r: Result) => r.ips!.map((i) => i.address.split("/")[0]).find((a) => !a.includes(":"))!;

async function clean(agent: TestAgent): Promise<IpamCheckReport> {
  const r = await agent.request({ op: "ipam-check" });
  if (!r.ok) assert.fail(r.msg);
  return r.report!;
}

function must(r: AgentResponse): Result {
  if (!r.ok) assert.fail(`${r.code}: ${r.msg}`);
  return r.result!;
}

test("restarting the agent (SIGTERM or SIGKILL) never disturbs running pods", async () => {
  const host = await createNetns("host");
  let agent = await startTestAgent({ netns: host.path, podCidr: "10.70.0.0/24,fd70::/64" });
  try {
    const pods = await Promise.all(
      [0, 1, 2].map(async () => {
        const ns = await createNetns("pod");
        const containerId = cid();
        return { ns, containerId, result: must(await agent.request(addReq(containerId, ns))) };
      }),
    );
    const snapshot = async () =>
      Promise.all(
        pods.map(async (p) => {
          const l = await linkAddr(p.ns, "eth0");
          const h = await linkAddr(host, p.result.interfaces![0].name);
          return {
            podIfindex: l?.ifindex,
            mac: l?.address,
            addrs: await globalAddrs(p.ns, "eth0"),
            hostIfindex: h?.ifindex,
          };
        }),
      );
    const before = await snapshot();
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      await agent.kill(signal);
      if (signal === "SIGTERM") assert.equal(existsSync(agent.socket), false, "SIGTERM closes the socket");
      agent = await agent.restart();
      assert.deepEqual(await snapshot(), before, `after ${signal} and restart`);
      assert.ok(await ping(pods[0].ns, v4of(pods[1].result)), `ping after ${signal}`);
      for (const p of pods) {
        must(
          await agent.request({
            op: "check",
            network: "weft",
            containerId: p.containerId,
            netns: p.ns.path,
            ifname: "eth0",
            prevResult: p.result,
          }),
        );
      }
      const report = await clean(agent);
      assert.deepEqual([report.allocations, report.leaked, report.conflicts], [6, [], []]);
    }
  } finally {
    await agent.cleanup();
  }
});

test("a second agent on a live socket refuses to start and touches nothing; a stale socket file is replaced", async () => {
  const host = await createNetns("host");
  const agent = await startTestAgent({ netns: host.path, podCidr: "10.74.0.0/24" });
  try {
    const pod = await createNetns("pod");
    must(await agent.request(addReq(cid(), pod)));
    const before = await linkAddr(pod, "eth0");
    // From another namespace (one agent per namespace is safety.test.ts's): the socket path alone.
    const other = await createNetns("host");
    await assert.rejects(
      startTestAgent({
        netns: other.path,
        podCidr: "10.74.0.0/24",
        stateDir: agent.stateDir + "2",
        socket: agent.socket,
      }),
      /already listening/,
    );
    must(await agent.request({ op: "status", network: "weft" }));
    assert.equal((await linkAddr(pod, "eth0"))?.ifindex, before?.ifindex, "the running agent's pod is untouched");
    // After a kill -9 the socket file stays behind; a new agent replaces it.
    await agent.kill("SIGKILL");
    assert.ok(existsSync(agent.socket));
    const again = await agent.restart();
    must(await again.request({ op: "status", network: "weft" }));
    await again.cleanup();
  } finally {
    await agent.cleanup();
  }
});

test("on start, weft host veths without an allocation are removed and other links are left alone", async () => {
  const host = await createNetns("host");
  let agent = await startTestAgent({ netns: host.path, podCidr: "10.71.0.0/24" });
  try {
    await agent.kill("SIGTERM");
    await host.exec(["ip", "link", "add", "wf0123456789a", "type", "veth", "peer", "name", "orphanpeer"]);
    await host.exec(["ip", "link", "add", "notweft0", "type", "veth", "peer", "name", "notweft1"]);
    agent = await agent.restart();
    assert.deepEqual(await weftLinks(host), []);
    assert.ok(await linkAddr(host, "notweft0"));
  } finally {
    await agent.cleanup();
  }
});

test("kill -9 during a burst of ADDs, restart, DEL all: no address given twice, nothing leaked", async (t) => {
  const host = await createNetns("host");
  let agent = await startTestAgent({ netns: host.path, podCidr: "10.72.0.0/24,fd72::/64" });
  try {
    // ADDs kept in flight by 16 workers (as a busy runtime would), so whenever the kill comes some
    // are mid-way, however fast or loaded the machine is. Workers stop issuing at the kill.
    const N = 120;
    const nss = await Promise.all(Array.from({ length: N }, () => createNetns("pod")));
    const ids = nss.map(() => cid());
    const outcomes: (AgentResponse | null)[] = nss.map(() => null);
    const issued = new Set<number>();
    let next = 0;
    let answered = 0;
    let killed: Promise<unknown> | undefined;
    const worker = async () => {
      while (!killed && next < N) {
        const i = next++;
        issued.add(i);
        outcomes[i] = await agent.request(addReq(ids[i], nss[i])).catch(() => null); // null: dropped by the kill
        if (outcomes[i] && ++answered === 3) killed = agent.kill("SIGKILL");
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    await killed;
    assert.ok(
      [...issued].some((i) => outcomes[i] === null),
      "the kill interrupted some ADDs",
    );
    const succeeded = outcomes.map((r, i) => (r?.ok ? i : -1)).filter((i) => i >= 0);
    const unanswered = outcomes.map((r, i) => (r === null || !r.ok ? i : -1)).filter((i) => i >= 0);
    assert.ok(succeeded.length >= 3, `some ADDs finished before the kill (${succeeded.length})`);

    agent = await agent.restart();
    const ready = agent
      .logs()
      .split("\n")
      .find((l) => l.includes('"agent ready"'));
    t.diagnostic(`${succeeded.length} ADDs answered before the kill; restart: ${ready ?? "?"}`);
    // Answered pods are intact; unanswered ones are either fully wired (done just before the
    // kill) or have nothing at all.
    for (const i of succeeded) {
      must(
        await agent.request({
          op: "check",
          network: "weft",
          containerId: ids[i],
          netns: nss[i].path,
          ifname: "eth0",
          prevResult: (outcomes[i] as { result: Result }).result,
        }),
      );
    }
    for (const i of unanswered) {
      const link = await linkAddr(nss[i], "eth0");
      if (link) assert.equal((await globalAddrs(nss[i], "eth0")).length, 2, `pod ${i} half-made`);
    }
    let report = await clean(agent);
    assert.deepEqual([report.leaked, report.conflicts], [[], []], "clean after restart");

    // The runtime retries what failed (DEL, then ADD): every pod gets an address, none twice.
    for (const i of unanswered) {
      must(
        await agent.request({ op: "del", network: "weft", containerId: ids[i], netns: nss[i].path, ifname: "eth0" }),
      );
    }
    await Promise.all(unanswered.map((i) => agent.request(addReq(ids[i], nss[i])).then(must)));
    const all = (await Promise.all(nss.map((ns) => globalAddrs(ns, "eth0")))).flat();
    assert.equal(all.length, 2 * N);
    assert.equal(new Set(all).size, 2 * N, "an address was given twice");
    const lastV4 = (await globalAddrs(nss[N - 1], "eth0")).find((a) => !a.includes(":"))!;
    assert.ok(await ping(nss[0], lastV4.split("/")[0]), "pods reach each other after the crash");

    // A kill in the middle of a burst of DELs: the runtime retries them after the restart.
    let deleted = 0;
    let killedDel: Promise<unknown> | undefined;
    await Promise.all(
      nss.map((ns, i) =>
        agent.request({ op: "del", network: "weft", containerId: ids[i], netns: ns.path, ifname: "eth0" }).then(
          () => {
            if (++deleted === 10) killedDel = agent.kill("SIGKILL");
          },
          () => undefined,
        ),
      ),
    );
    await killedDel;
    agent = await agent.restart();
    await Promise.all(
      nss.map((ns, i) =>
        agent.request({ op: "del", network: "weft", containerId: ids[i], netns: ns.path, ifname: "eth0" }).then(must),
      ),
    );
    report = await clean(agent);
    assert.deepEqual(report, { allocations: 0, leaked: [], conflicts: [] });
    assert.deepEqual(await weftLinks(host), []);
  } finally {
    await agent.cleanup();
  }
});

test("ipam check finds a leak and a conflict, and --fix repairs them", async () => {
  const host = await createNetns("host");
  const agent = await startTestAgent({ netns: host.path, podCidr: "10.73.0.0/24" });
  try {
    const gone = await createNetns("pod");
    const stays = await createNetns("pod");
    const goneR = must(await agent.request(addReq(cid(), gone)));
    const staysR = must(await agent.request(addReq(cid(), stays)));
    // The runtime removes a namespace without DEL: its veth pair goes with it.
    await gone.remove();
    // Someone routes the other pod's address through a stray link.
    await host.exec(["ip", "link", "add", "stray0", "type", "veth", "peer", "name", "stray1"]);
    await host.exec(["ip", "link", "set", "stray0", "up"]);
    await host.exec(["ip", "route", "add", `${v4of(staysR)}/32`, "dev", "stray0", "metric", "5"]);
    let report = await clean(agent);
    assert.equal(report.leaked.length, 1);
    assert.equal(report.leaked[0].addresses![0], v4of(goneR));
    assert.equal(report.conflicts.length, 1);
    assert.equal(report.conflicts[0].address, v4of(staysR));
    assert.deepEqual(report.conflicts[0].devices?.sort(), [staysR.interfaces![0].name, "stray0"].sort());
    // The CLI, as a user runs it: exit 1 and the same findings as JSON.
    const cli = await runStatus([process.execPath, CLI, "ipam", "check", "--socket", agent.socket, "-o", "json"]);
    assert.equal(cli.code, 1, cli.stderr);
    const fromCli = JSON.parse(cli.stdout) as IpamCheckReport;
    assert.deepEqual([fromCli.allocations, fromCli.leaked.length, fromCli.conflicts.length], [2, 1, 1]);
    const fixCli = await runStatus([process.execPath, CLI, "ipam", "check", "--socket", agent.socket, "--fix"]);
    assert.equal(fixCli.code, 0, fixCli.stdout + fixCli.stderr);
    assert.match(fixCli.stdout, /fixed: released .*host veth .* is gone/);
    assert.match(fixCli.stdout, /fixed: deleted route .* dev stray0/);
    report = await clean(agent);
    assert.deepEqual([report.leaked, report.conflicts], [[], []]);
    assert.equal(report.allocations, 1);
    assert.ok(await linkAddr(stays, "eth0"));
  } finally {
    await agent.cleanup();
  }
});
