// The agent cannot hurt the host it lands on (issue 8): one agent per network namespace whatever
// its socket or state dir, never in the machine's own namespace without --real-node, and no ADD
// whose CNI_NETNS is the node itself. Real kernel; every agent runs in a namespace the test makes,
// except the one start in the root namespace that must refuse before it changes anything.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runStatus } from "../kernel/exec.js";
import { inHostNetns } from "../kernel/nsfile.js";
import { startTestAgent } from "../testlib/agent.js";
import { createNetns, linkAddr, removeAllNetns, type TestNetns, weftLinks } from "../testlib/netns.js";
import type { AgentResponse, IpamCheckReport } from "../agent-api/schema.js";

after(removeAllNetns);

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");
let seq = 0;
const cid = () => `s${process.pid}x${++seq}`;
const addReq = (containerId: string, netns: string) => ({
  op: "add",
  network: "weft",
  containerId,
  netns,
  ifname: "eth0",
  args: {},
});

function ok(r: AgentResponse): void {
  if (!r.ok) assert.fail(`agent said ${r.code}: ${r.msg}`);
}

/** Runs the weft CLI (argv after the node binary) and returns its exit code and stderr. */
function cli(argv: string[]): { code: number | null; stderr: string } {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const r = spawnSync(argv[0], argv.slice(1), { env, encoding: "utf8", timeout: 30_000 });
  return { code: r.status, stderr: r.stderr };
}

test("a second agent in the same network namespace, with its own socket and state dir, refuses and touches nothing", async () => {
  const host = await createNetns("host");
  const agent = await startTestAgent({ netns: host.path, podCidr: "10.75.0.0/24" });
  const dir = mkdtempSync(join(tmpdir(), "weft-second-"));
  try {
    const pod = await createNetns("pod");
    ok(await agent.request(addReq(cid(), pod.path)));
    const podBefore = await linkAddr(pod, "eth0");
    const hostLinks = await weftLinks(host);
    assert.equal(hostLinks.length, 1);

    const second = cli([
      "nsenter",
      `--net=${host.path}`,
      "--",
      process.execPath,
      CLI,
      "agent",
      "--node",
      "second",
      "--store",
      "local",
      "--state-dir",
      join(dir, "state"),
      "--socket",
      join(dir, "run", "agent.sock"),
      "--pod-cidr",
      "10.76.0.0/24",
    ]);
    assert.notEqual(second.code, 0, "the second agent must not run");
    assert.match(
      second.stderr,
      new RegExp(
        `agent pid ${agent.pid} \\(socket ${agent.socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.*already serves this network namespace`,
      ),
    );
    // Nothing of its own was made, and nothing of the first agent's was taken for an orphan.
    assert.equal(existsSync(join(dir, "state")), false, "no state dir");
    assert.equal(existsSync(join(dir, "run", "agent.sock")), false, "no socket");
    assert.deepEqual(await weftLinks(host), hostLinks, "the first agent's pod veth survives");
    assert.equal((await linkAddr(pod, "eth0"))?.ifindex, podBefore?.ifindex, "the pod's interface is untouched");
    ok(await agent.request({ op: "status", network: "weft" }));

    // The lock is the process': once the first agent is gone (kill -9 too), another may start.
    await agent.kill("SIGKILL");
    const next = await startTestAgent({
      netns: host.path,
      podCidr: "10.75.0.0/24",
      stateDir: agent.stateDir,
      socket: agent.socket,
    });
    ok(await next.request({ op: "status", network: "weft" }));
    await next.kill("SIGTERM");
  } finally {
    await agent.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("agents in different network namespaces of one machine run side by side", async () => {
  const [a, b] = [await createNetns("host"), await createNetns("host")];
  const one = await startTestAgent({ netns: a.path, podCidr: "10.77.0.0/24" });
  try {
    const two = await startTestAgent({ netns: b.path, podCidr: "10.78.0.0/24" });
    try {
      ok(await one.request({ op: "status", network: "weft" }));
      ok(await two.request({ op: "status", network: "weft" }));
    } finally {
      await two.cleanup();
    }
  } finally {
    await one.cleanup();
  }
});

test("in the machine's own network namespace the agent refuses without --real-node", async () => {
  // This process runs in the root namespace (the test runner is started there). The agent must
  // exit before any change: the code checks before the socket, the state dir, the namespace lock
  // and the forwarding sysctls (run.ts startAgent); here only what a user sees is asserted.
  assert.ok(inHostNetns(), "the test runner is in the machine's own namespace");
  const dir = mkdtempSync(join(tmpdir(), "weft-rootns-"));
  try {
    const r = cli([
      process.execPath,
      CLI,
      "agent",
      "--node",
      "n1",
      "--store",
      "local",
      "--state-dir",
      join(dir, "state"),
      "--socket",
      join(dir, "run", "agent.sock"),
      "--pod-cidr",
      "10.79.0.0/24",
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /refusing to run in the machine's own network namespace.*--real-node/);
    assert.equal(existsSync(join(dir, "state")), false, "no state dir");
    assert.equal(existsSync(join(dir, "run")), false, "no socket dir");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an ADD whose CNI_NETNS is the node's own namespace is refused with CNI code 4 and leaves nothing", async () => {
  const host = await createNetns("host");
  const agent = await startTestAgent({ netns: host.path, podCidr: "10.80.0.0/24" });
  let alias: TestNetns | undefined;
  try {
    // Another name for the agent's namespace: a bind mount of it, as a confused runtime might pass.
    alias = await createNetns("alias");
    await runStatus(["umount", alias.path]);
    await runStatus(["mount", "--bind", host.path, alias.path]).then((r) => assert.equal(r.code, 0, r.stderr));
    for (const netns of ["/proc/self/ns/net", "/proc/1/ns/net", host.path, alias.path]) {
      const r = await agent.request(addReq(cid(), netns));
      assert.equal(r.ok, false, `ADD into ${netns} must fail`);
      if (r.ok) continue;
      assert.equal(r.code, 4, `${netns}: ${r.msg}`);
      assert.match(r.msg, /node's own network namespace/);
    }
    assert.deepEqual(await weftLinks(host), [], "no veth in the agent's namespace");
    const chk = await agent.request({ op: "ipam-check" });
    if (!chk.ok) assert.fail(chk.msg);
    const report: IpamCheckReport = chk.report!;
    assert.equal(report.allocations, 0, "no address was allocated");
  } finally {
    await agent.cleanup();
    // The alias is a bind mount of the test's own host namespace: unmounting it is what deleting does.
    if (alias) await runStatus(["umount", alias.path]);
  }
});
