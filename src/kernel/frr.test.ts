// kernel/frr.ts on the real kernel: FRR started in a namespace this test makes, with every path
// of its own (config, PID files, vty sockets, zebra and BFD sockets), found again by PID file and
// command line, queried with vtysh, stopped by PID; bad paths and commands refused before argv.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import { run } from "./exec.js";
import {
  findFrr,
  FRR_DAEMONS,
  frrPaths,
  removeFrrFiles,
  startFrr,
  stopFrr,
  vtysh,
  vtyshJson,
  writeFrrConfig,
} from "./frr.js";
import { deleteNetns, ensureNetns } from "./netns.js";
import { InvalidKernelInput } from "./validate.js";

const skip =
  process.getuid?.() !== 0
    ? "needs root (network namespaces)"
    : !existsSync("/usr/lib/frr/bgpd")
      ? "FRR is not installed (Debian frr)"
      : undefined;

test("FRR's directory must be absolute, plain and short; vtysh commands hold no line break", async () => {
  for (const bad of ["relative", "/a/../b", "/a b", '/a"b', `/${"x".repeat(90)}`])
    assert.throws(() => frrPaths(bad), InvalidKernelInput, bad);
  const p = frrPaths("/run/x-frr/tor1");
  assert.equal(p.config("bgpd"), "/run/x-frr/tor1/bgpd.conf");
  await assert.rejects(vtysh(p, ["show version\nconfigure terminal"]), InvalidKernelInput);
  await assert.rejects(vtysh(p, []), InvalidKernelInput);
});

test("a PID file naming a process that is not this instance's daemon is ignored", { skip }, async () => {
  const p = frrPaths(`/run/weft-frrtest-${process.pid}`);
  try {
    await writeFrrConfig(p, {});
    writeFileSync(p.pidfile("bgpd"), `${process.pid}\n`);
    assert.deepEqual(await findFrr(p), {});
    assert.deepEqual(await stopFrr(p), []);
  } finally {
    await removeFrrFiles(p);
  }
});

test(
  "FRR in a namespace: started, adopted, queried, stopped by PID, nothing left",
  { skip, timeout: 60_000 },
  async () => {
    const ns = `weft-frrtest-${process.pid}`;
    const p = frrPaths(`/run/weft-frrtest-${process.pid}`);
    await ensureNetns(ns);
    try {
      await run(["ip", "link", "set", "lo", "up"], { netns: `/run/netns/${ns}` });
      await writeFrrConfig(p, {
        zebra: "hostname t\n",
        bgpd: "router bgp 65001\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\nexit\n",
        bfdd: "bfd\n profile weft\n  receive-interval 100\n exit\nexit\n",
      });
      // FRR reads its files after dropping to the frr user: they are frr's.
      assert.match(readFileSync("/etc/passwd", "utf8"), /^frr:/m);
      const pids = await startFrr(p, ns);
      assert.deepEqual(Object.keys(pids).sort(), [...FRR_DAEMONS].sort());
      // Started again: the running daemons are adopted, not doubled.
      assert.deepEqual(await startFrr(p, ns), pids);
      assert.deepEqual(await findFrr(p), pids);
      const j = await vtyshJson<{ localAS?: number; routerId?: string }>(p, "show ip bgp json", "bgpd");
      assert.equal(j.localAS, 65001);
      assert.equal(j.routerId, "192.0.2.1");
      assert.match(await vtysh(p, ["show bfd peers"], { daemon: "bfdd" }), /BFD Peers/);
      const ended = await stopFrr(p);
      assert.deepEqual(ended.sort(), Object.values(pids).sort());
      assert.deepEqual(await findFrr(p), {});
    } finally {
      await stopFrr(p);
      await removeFrrFiles(p);
      await deleteNetns(ns);
    }
  },
);
