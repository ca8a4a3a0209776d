// The hand-wired proof, on the real kernel: two node namespaces joined by a veth "underlay", a pod
// namespace behind each, one charon with kernel-libipsec per node (kernel/charon.ts), swanctl.conf
// from the renderer. Pods reach each other; a capture on the underlay holds only IKE and ESP-in-UDP
// between the node addresses, never a pod address; a restarted caller adopts the running charon.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import { run } from "./exec.js";
import {
  charonPaths,
  listSas,
  loadSwanctl,
  removeCharonFiles,
  renderSwanctlConf,
  startCharon,
  stopCharon,
  type CharonPaths,
} from "./charon.js";
import { createNetns, removeAllNetns, type TestNetns } from "../testlib/netns.js";

const IPERF_PID = `/tmp/wipsec-iperf-${process.pid}.pid`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const dirs: string[] = [];
const charons: CharonPaths[] = [];

function killIperf(): void {
  try {
    process.kill(Number(readFileSync(IPERF_PID, "utf8").trim()), "SIGTERM");
  } catch {
    // not started or already gone
  }
  rmSync(IPERF_PID, { force: true });
}

after(async () => {
  killIperf();
  for (const p of charons) await stopCharon(p);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  await removeAllNetns();
});

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(200);
  }
}

interface Node {
  ns: TestNetns;
  pod: TestNetns;
  addr: string;
  podCidr: string;
  podIp: string;
  paths: CharonPaths;
}

test("two charons with kernel-libipsec: pods talk, the underlay carries only IKE and ESP-in-UDP", async () => {
  const nodes: Node[] = [];
  for (const i of [1, 2]) {
    const dir = mkdtempSync(`/tmp/wipsec-${i}-`);
    dirs.push(dir);
    const paths = charonPaths(dir);
    charons.push(paths);
    nodes.push({
      ns: await createNetns(`ipsn${i}`),
      pod: await createNetns(`ipsp${i}`),
      addr: `10.77.0.${i}`,
      podCidr: `10.78.${i}.0/24`,
      podIp: `10.78.${i}.2`,
      paths,
    });
  }
  const [a, b] = nodes;
  await run(["ip", "link", "add", "u1", "netns", a.ns.path, "type", "veth", "peer", "u2", "netns", b.ns.path]);
  for (const [i, n] of nodes.entries()) {
    const dev = `u${i + 1}`;
    await n.ns.exec(["ip", "addr", "add", `${n.addr}/24`, "dev", dev]);
    await n.ns.exec(["ip", "link", "set", dev, "up"]);
    await run(["ip", "link", "add", "pv", "netns", n.ns.path, "type", "veth", "peer", "eth0", "netns", n.pod.path]);
    await n.ns.exec(["ip", "addr", "add", n.podCidr.replace(/0\/24$/, "1/24"), "dev", "pv"]);
    await n.ns.exec(["ip", "link", "set", "pv", "up"]);
    await n.ns.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await n.pod.exec(["ip", "addr", "add", `${n.podIp}/24`, "dev", "eth0"]);
    await n.pod.exec(["ip", "link", "set", "eth0", "up"]);
    await n.pod.exec(["ip", "route", "add", "default", "via", n.podCidr.replace(/0\/24$/, "1")]);
  }
  // The capture runs from before the first IKE packet to the end.
  const cap = spawn("nsenter", [`--net=${a.ns.path}`, "--", "tcpdump", "-l", "-n", "-i", "u1", "ip"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let lines = "";
  cap.stdout.on("data", (d: Buffer) => (lines += d.toString()));
  let capReady = false;
  cap.stderr.on("data", (d: Buffer) => (capReady ||= /listening on/.test(d.toString())));
  await waitFor("tcpdump to listen", async () => capReady, 10_000);

  const psk = { id: 1, hex: "5a".repeat(32) };
  const pids: number[] = [];
  for (const n of nodes) {
    const s = await startCharon(n.paths, { netns: n.ns.path });
    assert.equal(s.adopted, false);
    pids.push(s.pid);
    const peers = nodes
      .filter((x) => x !== n)
      .map((x) => ({ name: `n${x.addr.split(".")[3]}`, address: x.addr, podCidrs: [x.podCidr] }));
    const text = renderSwanctlConf({
      local: { name: `n${n.addr.split(".")[3]}`, address: n.addr, podCidrs: [n.podCidr] },
      peers,
      psks: [psk],
    });
    assert.equal(await loadSwanctl(n.paths, text), true);
    assert.equal(await loadSwanctl(n.paths, text), false, "the same config is not loaded twice");
  }
  const ping = (from: Node, to: Node) =>
    from.pod.status(["busybox", "ping", "-c", "1", "-W", "1", to.podIp]).then((r) => r.code === 0);
  await waitFor("pod-to-pod ping through the tunnel", () => ping(a, b));
  assert.ok(await ping(b, a));
  // Its own PID file: the daemon is killed at the end (its namespace going does not end it).
  await b.pod.exec(["iperf3", "-s", "-D", "--pidfile", IPERF_PID]);
  await waitFor(
    "a 3 s iperf3 stream through the tunnel",
    async () => (await a.pod.status(["iperf3", "-c", b.podIp, "-t", "3"], { timeoutMs: 30_000 })).code === 0,
  );

  const sas = await listSas(a.paths);
  assert.equal(sas.length, 1, "one IKE_SA for the pair");
  assert.equal(sas[0].state, "ESTABLISHED");
  const child = sas[0].children.find((c) => c.state === "INSTALLED");
  assert.ok(child && child.bytesOut > 1_000_000, `the CHILD_SA carried the stream: ${JSON.stringify(sas[0].children)}`);
  assert.deepEqual(child.remoteTs, [b.podCidr]);

  // A restarted agent finds the running charon again: same PID, nothing restarted.
  assert.deepEqual(await startCharon(a.paths, { netns: a.ns.path }), { pid: pids[0], adopted: true });

  cap.kill("SIGINT");
  await new Promise((r) => cap.once("exit", r));
  const frames = lines.split("\n").filter((l) => l.trim());
  assert.ok(frames.length > 100, `the capture saw the traffic (${frames.length} frames)`);
  // IKE and ESP-in-UDP between the node addresses, and ICMP errors about them (IKE sent before the
  // peer's charon listened); never a pod address, outer or quoted.
  const bad = frames.filter(
    (l) =>
      !/ IP 10\.77\.0\.[12](\.(4500|500) > 10\.77\.0\.[12]\.(4500|500): | > 10\.77\.0\.[12]: ICMP )/.test(l) ||
      /10\.78\./.test(l),
  );
  assert.deepEqual(
    bad.slice(0, 5),
    [],
    `${bad.length} frames on the underlay were not IKE/ESP-in-UDP between the nodes`,
  );

  for (const n of nodes) {
    await stopCharon(n.paths);
    await removeCharonFiles(n.paths);
  }
  assert.equal(await ping(a, b), false, "no charon, no tunnel: the trap routes are gone and nothing else routes pods");
});
