// `weft uninstall` on a node of a real 2-node vxlan cluster (etcd, real agents in node namespaces,
// pods wired, peers routed, policy table in place): refused while an agent serves the namespace;
// without --yes it lists and changes nothing; with --yes no weft link, route, nft table or file is left.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { run, runStatus } from "../kernel/exec.js";
import { startCluster, waitFor, type TestCluster } from "../testlib/agent-cluster.js";
import { createNetns, removeAllNetns } from "../testlib/netns.js";
import { tempDir } from "../testlib/plugin-exec.js";

after(removeAllNetns);
const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");

const WEFT_LINK = /^(weft\.\d+|wf[0-9a-f]{11})$/;

async function weftIn(netns: string, args: string[]) {
  return runStatus(["nsenter", `--net=${netns}`, "--", process.execPath, CLI, ...args]);
}
async function links(netns: string): Promise<string[]> {
  return (JSON.parse(await run(["ip", "-j", "link", "show"], { netns })) as { ifname: string }[]).map((l) => l.ifname);
}
async function routes(netns: string): Promise<{ dst: string; dev?: string; protocol?: string }[]> {
  const out: { dst: string; dev?: string; protocol?: string }[] = [];
  for (const f of ["-4", "-6"])
    out.push(...(JSON.parse(await run(["ip", "-j", f, "route", "show", "table", "all"], { netns })) as typeof out));
  return out;
}
async function nftTables(netns: string): Promise<string[]> {
  const j = JSON.parse(await run(["nft", "-j", "list", "tables"], { netns })) as {
    nftables: { table?: { family: string; name: string } }[];
  };
  return j.nftables.flatMap((e) => (e.table ? [`${e.table.family} ${e.table.name}`] : []));
}
const weftRoute = (r: { dev?: string; protocol?: string }) =>
  r.protocol === "230" || (r.dev !== undefined && WEFT_LINK.test(r.dev));

test("weft uninstall removes every weft link, route, nft table and file from a node, and only with no agent running", async () => {
  const tmp = tempDir("weft-uninstall-");
  let c: TestCluster | undefined;
  try {
    c = await startCluster({ settings: { clusterCIDRs: ["10.98.0.0/16"], backend: "vxlan" }, subnets: [0, 0] });
    const [a0, a1] = c.agents;
    const node = a0.node.netns;
    const stateDir = join(dirname(a0.socket), "state0");
    const bin = join(tmp.path, "bin");
    const conf = join(tmp.path, "net.d");
    const installed = await runStatus([
      process.execPath,
      CLI,
      "install-cni",
      "--bin-dir",
      bin,
      "--conf-dir",
      conf,
      "--socket",
      a0.socket,
    ]);
    assert.equal(installed.code, 0, installed.stderr);
    const p0 = (await c.addPod(0)).pod!;
    await c.addPod(1);
    await waitFor("node 0's route to node 1's pod subnet", async () =>
      (await routes(node)).some((r) => r.protocol === "230"),
    );
    assert.ok(
      (await links(node)).some((l) => /^weft\.\d+$/.test(l)),
      "the vxlan device is there",
    );
    assert.ok((await links(node)).includes(p0.hostIf));
    assert.ok((await nftTables(node)).includes("inet weft"), "the policy table is there");

    const flags = ["--bin-dir", bin, "--conf-dir", conf, "--state-dir", stateDir, "--socket", a0.socket];
    // A running agent: on its socket, or on any socket in the same namespace (its namespace lock).
    const busy = await weftIn(node, ["uninstall", ...flags, "--yes"]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /^weft: a weft agent is running on .*delete weft's DaemonSet/);
    const other = await weftIn(node, [
      "uninstall",
      ...flags.slice(0, 6),
      "--socket",
      join(tmp.path, "x.sock"),
      "--yes",
    ]);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /already serves this network namespace/);
    assert.ok(existsSync(join(conf, "10-weft.conflist")), "a refused uninstall changes nothing");

    await a0.kill("SIGTERM");
    // The conflist stays when the agent stops (runtimes must not fall back to another network).
    assert.ok(existsSync(join(conf, "10-weft.conflist")));
    const dry = await weftIn(node, ["uninstall", ...flags]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would remove file .*10-weft\.conflist/);
    assert.match(dry.stdout, /would remove nft table inet weft/);
    assert.match(dry.stdout, new RegExp(`would remove link ${p0.hostIf} \\(a pod's host veth`));
    assert.match(dry.stdout, /nothing changed: run again with --yes/);
    assert.ok(existsSync(join(conf, "10-weft.conflist")), "without --yes nothing is removed");

    const done = await weftIn(node, ["uninstall", ...flags, "--yes"]);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /removed link weft\.\d+/);
    assert.match(done.stdout, /removed route 10\.98\./);

    assert.deepEqual(
      (await links(node)).filter((l) => WEFT_LINK.test(l)),
      [],
      "no weft link",
    );
    assert.deepEqual((await routes(node)).filter(weftRoute), [], "no weft route");
    assert.deepEqual(
      (await nftTables(node)).filter((t) => / weft/.test(t)),
      [],
      "no weft nft table",
    );
    for (const f of [join(conf, "10-weft.conflist"), join(bin, "weft"), join(bin, "weft-full"), stateDir, a0.socket])
      assert.equal(existsSync(f), false, `${f} is gone`);
    assert.equal(existsSync(join(dirname(a0.socket), "del-queue")), false);
    // The other node is untouched.
    assert.ok((await links(a1.node.netns)).some((l) => /^weft\.\d+$/.test(l)));

    const again = await weftIn(node, ["uninstall", ...flags, "--yes"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.trim(), "nothing of weft found on this node");
  } finally {
    await c?.destroy();
    tmp.remove();
  }
});

test("weft uninstall refuses a state dir that is not an agent's, before changing anything", async () => {
  const tmp = tempDir("weft-uninstall-guard-");
  try {
    const ns = (await createNetns("wu")).path;
    const base = ["uninstall", "--bin-dir", join(tmp.path, "bin"), "--conf-dir", join(tmp.path, "conf")];
    const sock = ["--socket", join(tmp.path, "run", "weft.sock"), "--yes"];
    const top = await weftIn(ns, [...base, "--state-dir", "/etc", ...sock]);
    assert.equal(top.code, 1);
    assert.match(top.stderr, /^weft: --state-dir \/etc: refusing to remove a top-level directory/);
    const other = join(tmp.path, "data");
    mkdirSync(other);
    writeFileSync(join(other, "important.txt"), "keep me\n");
    const r = await weftIn(ns, [...base, "--state-dir", other, ...sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /does not look like a weft agent's state directory/);
    assert.ok(existsSync(join(other, "important.txt")));
  } finally {
    tmp.remove();
  }
});
