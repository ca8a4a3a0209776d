// The plugin binary against a real agent that stops (killed by PID): DEL still succeeds (queued
// beside the socket, replayed by the agent when it starts), ADD gets code 11 and works after the
// restart, and nothing is leaked (veth, address, queue file). Real kernel, test namespaces.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { delQueueDir, queueDel, queueFileName } from "./del-queue.js";
import { startTestAgent, type TestAgent } from "../testlib/agent.js";
import { createNetns, globalAddrs, removeAllNetns, weftLinks, type TestNetns } from "../testlib/netns.js";
import { binarySkipReason, invoke, REFERENCE_DIR, tempDir } from "../testlib/plugin-exec.js";

after(removeAllNetns);
const skip = binarySkipReason();
const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");

let seq = 0;
const cid = () => `down${process.pid}x${++seq}`;

function env(command: string, containerId: string, ns: TestNetns): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: ns.path,
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p",
    CNI_PATH: REFERENCE_DIR,
  };
}
const conf = (socket: string) => JSON.stringify({ cniVersion: "1.0.0", name: "weft", type: "weft", socket });

/** What `weft ipam check -o json` reports (the command a user runs). */
async function ipamCheck(socket: string): Promise<{ allocations: number; leaked: unknown[]; conflicts: unknown[] }> {
  const { stdout } = await promisify(execFile)(process.execPath, [
    CLI,
    "ipam",
    "check",
    "--socket",
    socket,
    "-o",
    "json",
  ]);
  return JSON.parse(stdout) as { allocations: number; leaked: unknown[]; conflicts: unknown[] };
}

async function add(socket: string, containerId: string, ns: TestNetns) {
  const r = await invoke(env("ADD", containerId, ns), conf(socket));
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.json as { interfaces: Array<{ name: string }>; ips: Array<{ address: string }> };
}

test(
  "agent down: DEL is queued and exits 0, ADD gets 11; after the restart the DEL is replayed and the ADD works",
  { skip },
  async () => {
    const host = await createNetns("host");
    let agent: TestAgent = await startTestAgent({ netns: host.path, podCidr: "10.81.0.0/24" });
    try {
      const [podA, podB, podC] = await Promise.all([createNetns("pod"), createNetns("pod"), createNetns("pod")]);
      const [a, b, c] = [cid(), cid(), cid()];
      const resA = await add(agent.socket, a, podA);
      await add(agent.socket, b, podB);
      const hostA = resA.interfaces[0].name;
      assert.ok((await weftLinks(host)).includes(hostA));

      // SIGKILL leaves the socket file behind (ECONNREFUSED); SIGTERM removes it (ENOENT): both are "down".
      await agent.kill("SIGKILL");
      const del = await invoke(env("DEL", a, podA), conf(agent.socket));
      assert.equal(del.code, 0, del.stdout + del.stderr);
      assert.equal(del.stdout.trim(), "", "DEL answers nothing on success");
      const queue = delQueueDir(agent.socket);
      assert.deepEqual(readdirSync(queue), [queueFileName({ network: "weft", containerId: a, ifname: "eth0" })]);
      assert.ok((await weftLinks(host)).includes(hostA), "nothing is deleted while the agent is down");

      const down = await invoke(env("ADD", c, podC), conf(agent.socket));
      assert.equal(down.code, 1);
      assert.equal((down.json as { code: number }).code, 11, down.stdout);
      // A second DEL of the same pod (the kubelet retries) replaces the first: still one file.
      assert.equal((await invoke(env("DEL", a, podA), conf(agent.socket))).code, 0);
      assert.equal(readdirSync(queue).length, 1);

      agent = await agent.restart();
      assert.deepEqual(readdirSync(queue), [], "the queue is empty once replayed");
      assert.ok(!(await weftLinks(host)).includes(hostA), "pod A's host veth is gone");
      assert.deepEqual(await globalAddrs(podA, "eth0").catch(() => []), [], "pod A's address is gone with its veth");
      const report = await ipamCheck(agent.socket);
      assert.deepEqual(
        [report.allocations, report.leaked, report.conflicts],
        [1, [], []],
        "only pod B holds an address",
      );

      const resC = await add(agent.socket, c, podC);
      assert.equal(resC.ips.length, 1);
      assert.deepEqual((await ipamCheck(agent.socket)).allocations, 2);
    } finally {
      await agent.cleanup();
    }
  },
);

test(
  "an ADD of an attachment with a queued DEL gets the DEL first; bad queue entries are dropped, an unsafe queue is refused",
  { skip },
  async () => {
    const host = await createNetns("host");
    const agent = await startTestAgent({ netns: host.path, podCidr: "10.82.0.0/24" });
    try {
      const pod = await createNetns("pod");
      const id = cid();
      const first = await add(agent.socket, id, pod);
      // As if a plugin had queued a DEL just as this agent opened its socket; then the runtime adds
      // the same container again in a new namespace (podman restart does).
      const file = await queueDel(
        agent.socket,
        { network: "weft", containerId: id, ifname: "eth0" },
        env("DEL", id, pod),
        Buffer.from(conf(agent.socket)),
      );
      const pod2 = await createNetns("pod");
      const second = await add(agent.socket, id, pod2);
      assert.equal(existsSync(file), false, "the queued DEL ran before the ADD");
      assert.deepEqual(await globalAddrs(pod, "eth0").catch(() => []), [], "the old namespace lost its interface");
      assert.equal((await globalAddrs(pod2, "eth0")).length, 1);
      assert.equal(second.interfaces[0].name, first.interfaces[0].name, "same attachment, same host name");
      assert.deepEqual((await ipamCheck(agent.socket)).allocations, 1);

      // A file that is not a DEL for the attachment its name says is never run: dropped at the next start.
      const queue = delQueueDir(agent.socket);
      const forged = join(queue, queueFileName({ network: "weft", containerId: "other", ifname: "eth0" }));
      writeFileSync(
        forged,
        JSON.stringify({
          version: 1,
          queuedAt: "",
          env: env("DEL", id, pod2),
          stdin: Buffer.from(conf(agent.socket)).toString("base64"),
        }),
        { mode: 0o600 },
      );
      writeFileSync(join(queue, "README"), "not an entry\n");
      const restarted = await agent.restart();
      try {
        assert.equal(existsSync(forged), false, "the forged entry was removed");
        assert.ok(existsSync(join(queue, "README")), "names that are not entries are left alone");
        assert.equal((await globalAddrs(pod2, "eth0")).length, 1, "and it deleted nothing");
        assert.match(restarted.logs(), /not a queued DEL; removed/);

        // A queue others could write is not used: DEL while down is then 11, as before.
        await restarted.kill("SIGTERM");
        chmodSync(queue, 0o755);
        const r = await invoke(env("DEL", id, pod2), conf(agent.socket));
        assert.equal(r.code, 1, r.stdout);
        assert.equal((r.json as { code: number; msg: string }).code, 11);
        assert.match((r.json as { msg: string }).msg, /DEL queue .*mode is 0755/);
      } finally {
        await restarted.cleanup();
      }
    } finally {
      await agent.cleanup();
    }
  },
);

test(
  "a queued DEL that fails is kept (and an ADD of that attachment gets 11) until a replay succeeds",
  { skip },
  async () => {
    const host = await createNetns("host");
    let agent: TestAgent = await startTestAgent({ netns: host.path, podCidr: "10.83.0.0/24" });
    try {
      const pod = await createNetns("pod");
      const id = cid();
      await add(agent.socket, id, pod);
      await agent.kill("SIGKILL");
      // The runtime's config names an IPAM plugin this node does not have: the delegate's DEL fails.
      const bad = JSON.stringify({
        cniVersion: "1.0.0",
        name: "weft",
        type: "weft",
        socket: agent.socket,
        ipam: { type: "no-such-ipam" },
      });
      assert.equal((await invoke(env("DEL", id, pod), bad)).code, 0, "queued while down");
      const file = join(delQueueDir(agent.socket), queueFileName({ network: "weft", containerId: id, ifname: "eth0" }));
      agent = await agent.restart();
      assert.ok(existsSync(file), "a failed replay keeps its file for the next try");
      assert.match(agent.logs(), /replaying a queued DEL failed; kept for the next try/);
      const blocked = await invoke(env("ADD", id, pod), conf(agent.socket));
      assert.equal((blocked.json as { code: number }).code, 11, blocked.stdout);
      assert.match((blocked.json as { msg: string }).msg, /queued while the agent was down could not be replayed/);
      // The runtime's next DEL (agent up now) goes straight to the agent; the queue entry is replaced
      // by a good one (as a later DEL while down would), and the next start replays it.
      await agent.kill("SIGTERM");
      assert.equal((await invoke(env("DEL", id, pod), conf(agent.socket))).code, 0);
      agent = await agent.restart();
      assert.equal(existsSync(file), false, "replayed and removed");
      assert.equal((await ipamCheck(agent.socket)).allocations, 0);
    } finally {
      await agent.cleanup();
    }
  },
);

test(
  "agents whose sockets share a directory share the queue, and each replays only its own DELs",
  { skip },
  async () => {
    const dir = tempDir("weft-shared-run-");
    const [h1, h2] = await Promise.all([createNetns("host"), createNetns("host")]);
    const s1 = join(dir.path, "run", "n1.sock");
    const s2 = join(dir.path, "run", "n2.sock");
    let a1 = await startTestAgent({
      netns: h1.path,
      podCidr: "10.84.0.0/24",
      stateDir: join(dir.path, "st1"),
      socket: s1,
    });
    let a2 = await startTestAgent({
      netns: h2.path,
      podCidr: "10.85.0.0/24",
      stateDir: join(dir.path, "st2"),
      socket: s2,
    });
    try {
      const pod = await createNetns("pod");
      const id = cid();
      const res = await add(s1, id, pod);
      await a1.kill("SIGKILL");
      assert.equal((await invoke(env("DEL", id, pod), conf(s1))).code, 0);
      const file = join(delQueueDir(s1), queueFileName({ network: "weft", containerId: id, ifname: "eth0" }));
      assert.ok(existsSync(file));
      a2 = await a2.restart();
      assert.ok(existsSync(file), "the other agent leaves it alone");
      a1 = await a1.restart();
      assert.equal(existsSync(file), false, "its own agent replays it");
      assert.ok(!(await weftLinks(h1)).includes(res.interfaces[0].name));
    } finally {
      await a1.cleanup();
      await a2.cleanup();
      dir.remove();
    }
  },
);
