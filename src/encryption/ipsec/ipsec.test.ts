// The IPsec implementation on the real kernel: two node namespaces on a veth underlay, a pod
// namespace behind each, and plain host-gw routes between the pod subnets (what a backend wires:
// without IPsec, pod traffic would cross in clear). Checked as a user would: pods reach each other
// (ICMP, TCP, UDP), a capture on every node's underlay holds no packet with a pod address, a
// 120 s stream survives the agent being replaced (charon keeps its PID) and >= 3 CHILD_SA rekeys
// at a 30 s rekey time, a PSK that is too short is refused with nothing made, and with charon gone
// the strict guard drops pod traffic instead of letting the host-gw route carry it in clear.
import assert from "node:assert/strict";
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { charonPaths, listSas, stopCharon } from "../../kernel/charon.js";
import { run } from "../../kernel/exec.js";
import { nftListTable } from "../../kernel/nft.js";
import { createNetns, removeAllNetns, type TestNetns } from "../../testlib/netns.js";
import { EncryptionError, type Encryption, type EncryptionLocal, type EncryptionPeer } from "../types.js";
import { createIpsecWith, GUARD_TABLE, PSK_FILE } from "./index.js";

const IPERF_PID = `/tmp/wipsec-iperf-${process.pid}.pid`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const STREAM_S = Number(process.env.WEFT_IPSEC_STREAM_S ?? 120);

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(200);
  }
}

interface Node {
  i: number;
  ns: TestNetns;
  pod: TestNetns;
  dev: string;
  addr: string;
  podCidr: string;
  podIp: string;
  stateDir: string;
  local: EncryptionLocal;
  enc?: Encryption;
}

const nodes: Node[] = [];
const CLUSTER = "10.79.0.0/16";

function writePsk(n: Node, hex: string): void {
  writeFileSync(`${n.stateDir}/${PSK_FILE}`, JSON.stringify({ generations: [{ id: 1, hex }] }), { mode: 0o600 });
}

function make(n: Node): Encryption {
  return createIpsecWith({
    stateDir: n.stateDir,
    kernel: { netns: n.ns.path },
    strict: true,
    rekeySeconds: 30,
    dpdSeconds: 5,
  });
}

async function startAll(): Promise<void> {
  const data = new Map<string, EncryptionPeer>();
  for (const n of nodes) {
    n.enc = make(n);
    const r = await n.enc.start(n.local);
    data.set(n.local.name, {
      name: n.local.name,
      underlay: n.local.underlay,
      podCIDRs: n.local.podCIDRs,
      data: r.data,
    });
  }
  for (const n of nodes) await n.enc!.sync([...data.values()]);
}

const ping = (from: Node, to: Node) =>
  from.pod.status(["busybox", "ping", "-c", "1", "-W", "1", to.podIp]).then((r) => r.code === 0);

/** tcpdump on a node's underlay, every IP frame as a text line. */
function capture(n: Node): { stop: () => Promise<string[]>; ready: Promise<void> } {
  const cap: ChildProcessByStdio<null, Readable, Readable> = spawn(
    "nsenter",
    [`--net=${n.ns.path}`, "--", "tcpdump", "-l", "-n", "-i", n.dev, "ip"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  cap.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const ready = new Promise<void>((res) =>
    cap.stderr.on("data", (d: Buffer) => /listening on/.test(d.toString()) && res()),
  );
  return {
    ready,
    stop: async () => {
      cap.kill("SIGINT");
      await new Promise((r) => cap.once("exit", r));
      return out.split("\n").filter((l) => l.trim());
    },
  };
}

/** Frames that carry a pod address, or are anything but IKE/ESP-in-UDP (and ICMP errors) between the nodes. */
function plaintext(frames: string[]): string[] {
  return frames.filter(
    (l) =>
      /10\.79\./.test(l) ||
      !/ IP 10\.76\.0\.[12](\.(4500|500) > 10\.76\.0\.[12]\.(4500|500): | > 10\.76\.0\.[12]: ICMP )/.test(l),
  );
}

before(async () => {
  for (const i of [1, 2]) {
    const stateDir = mkdtempSync(`/tmp/wipe-${i}-`);
    const n: Node = {
      i,
      ns: await createNetns(`ipen${i}`),
      pod: await createNetns(`ipep${i}`),
      dev: `u${i}`,
      addr: `10.76.0.${i}`,
      podCidr: `10.79.${i}.0/24`,
      podIp: `10.79.${i}.2`,
      stateDir,
      local: {
        name: `n${i}`,
        underlay: { ipv4: `10.76.0.${i}` },
        podCIDRs: { ipv4: `10.79.${i}.0/24` },
        clusterCIDRs: [CLUSTER],
      },
    };
    nodes.push(n);
  }
  const [a, b] = nodes;
  await run(["ip", "link", "add", a.dev, "netns", a.ns.path, "type", "veth", "peer", b.dev, "netns", b.ns.path]);
  for (const n of nodes) {
    const peer = nodes.find((x) => x !== n)!;
    await n.ns.exec(["ip", "addr", "add", `${n.addr}/24`, "dev", n.dev]);
    await n.ns.exec(["ip", "link", "set", n.dev, "up"]);
    await run(["ip", "link", "add", "pv", "netns", n.ns.path, "type", "veth", "peer", "eth0", "netns", n.pod.path]);
    await n.ns.exec(["ip", "addr", "add", `10.79.${n.i}.1/24`, "dev", "pv"]);
    await n.ns.exec(["ip", "link", "set", "pv", "up"]);
    await n.ns.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // The backend's plain route (host-gw): what would carry pod traffic in clear without IPsec.
    await n.ns.exec(["ip", "route", "add", peer.podCidr, "via", peer.addr]);
    await n.pod.exec(["ip", "addr", "add", `${n.podIp}/24`, "dev", "eth0"]);
    await n.pod.exec(["ip", "link", "set", "eth0", "up"]);
    await n.pod.exec(["ip", "route", "add", "default", "via", `10.79.${n.i}.1`]);
  }
  assert.ok(await ping(a, b), "the plain host-gw path works before IPsec (so the capture checks mean something)");
});

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
  for (const n of nodes) {
    await n.enc?.stop({ teardown: true }).catch(() => undefined);
    await stopCharon(charonPaths(`${n.stateDir}/ipsec`));
    rmSync(n.stateDir, { recursive: true, force: true });
  }
  await removeAllNetns();
});

test("a PSK that is too short (or missing) is refused with a clear error, and nothing is made", async () => {
  const [a] = nodes;
  writePsk(a, "ab".repeat(16));
  const enc = make(a);
  await assert.rejects(enc.start(a.local), (e: Error) => {
    assert.ok(e instanceof EncryptionError);
    assert.match(e.message, /too short: 16 bytes, need at least 32/);
    assert.doesNotMatch(e.message, /abab/, "the key is never in a message");
    return true;
  });
  assert.equal(existsSync(`${a.stateDir}/ipsec`), false, "no charon directory");
  assert.equal(await nftListTable(GUARD_TABLE, { netns: a.ns.path }), null, "no guard table");
  rmSync(`${a.stateDir}/${PSK_FILE}`);
  await assert.rejects(make(a).start(a.local), /pre-shared key in .* it is missing/);
});

test(`IPsec between two nodes: ICMP/TCP/UDP, a ${STREAM_S} s stream through an agent restart and >= 3 rekeys, zero plaintext`, async () => {
  const [a, b] = nodes;
  for (const n of nodes) writePsk(n, "c3".repeat(32));
  const caps = nodes.map(capture);
  await Promise.all(caps.map((c) => c.ready));
  await startAll();
  await waitFor("pod-to-pod ping through IPsec", () => ping(a, b));
  assert.ok(await ping(b, a));
  // Its own PID file: the daemon is killed at the end (its namespace going does not end it).
  await b.pod.exec(["iperf3", "-s", "-D", "--pidfile", IPERF_PID]);
  await waitFor(
    "a UDP iperf3 exchange",
    async () => (await a.pod.status(["iperf3", "-u", "-c", b.podIp, "-t", "2", "-b", "10M"])).code === 0,
  );

  const st = await a.enc!.status();
  assert.match(st.implementation, /kernel-libipsec/);
  assert.equal(st.device, "ipsec0");
  assert.equal(st.peers.length, 1);
  assert.equal(st.peers[0].ok, true, JSON.stringify(st.peers[0]));
  assert.match(st.peers[0].identity ?? "", /^10\.76\.0\.2 SPI in [0-9a-f]{8} out [0-9a-f]{8}$/);
  const pid = st.pid;
  assert.ok(pid);

  // The long stream; meanwhile count CHILD_SAs (each rekey installs a new one) and replace the agent.
  const stream = a.pod.status(["iperf3", "-c", b.podIp, "-t", String(STREAM_S), "-J"], {
    timeoutMs: (STREAM_S + 60) * 1000,
  });
  let done = false;
  void stream.then(() => (done = true));
  const children = new Set<number>();
  let restarted = false;
  const t0 = Date.now();
  while (!done) {
    for (const s of await listSas(charonPaths(`${a.stateDir}/ipsec`)).catch(() => []))
      for (const c of s.children) if (c.state === "INSTALLED" || c.state === "REKEYED") children.add(c.uniqueId);
    if (!restarted && Date.now() - t0 > 10_000) {
      // The agent dies (kill -9: no stop()) and a new one starts: it adopts the running charon.
      restarted = true;
      a.enc = make(a);
      const r = await a.enc.start(a.local);
      assert.equal(r.adopted, true);
      await a.enc.sync(
        nodes.map((n) => ({
          name: n.local.name,
          underlay: n.local.underlay,
          podCIDRs: n.local.podCIDRs,
          data: { ike: "psk", id: n.addr, pskGeneration: 1 },
        })),
      );
      assert.equal((await a.enc.status()).pid, pid, "charon kept its PID");
    }
    await sleep(1000);
  }
  const res = await stream;
  assert.equal(res.code, 0, `the stream ended in error: ${res.stdout.slice(-400)} ${res.stderr}`);
  const json = JSON.parse(res.stdout) as { end: { sum_received: { bytes: number; seconds: number } } };
  assert.ok(json.end.sum_received.seconds >= STREAM_S - 1, "the stream ran to its end");
  assert.ok(
    json.end.sum_received.bytes > STREAM_S * 1_000_000,
    `the stream moved data: ${json.end.sum_received.bytes} bytes`,
  );
  if (STREAM_S >= 100) assert.ok(children.size - 1 >= 3, `${children.size - 1} CHILD_SA rekeys in ${STREAM_S} s`);
  assert.equal((await a.enc!.status()).pid, pid);

  const frames = (await Promise.all(caps.map((c) => c.stop()))).flat();
  assert.ok(frames.length > 1000, `the captures saw the stream (${frames.length} frames)`);
  const bad = plaintext(frames);
  assert.deepEqual(bad.slice(0, 5), [], `${bad.length} frames on the underlays were not IKE/ESP-in-UDP`);
  process.stderr.write(
    `# ipsec: ${(json.end.sum_received.bytes * 8) / json.end.sum_received.seconds / 1e6} Mbit/s, ${children.size - 1} rekeys, ${frames.length} frames, 0 in clear\n`,
  );
});

test("strict: with the peer's charon gone, pod traffic is dropped, not carried in clear by the backend's route", async () => {
  const [a, b] = nodes;
  const cap = capture(a);
  await cap.ready;
  await stopCharon(charonPaths(`${a.stateDir}/ipsec`));
  assert.equal(await ping(a, b), false, "dropped");
  assert.equal(await ping(b, a), false, "dropped");
  const st = await a.enc!.status();
  assert.match(st.errors.join(";"), /charon is not running/);
  const bad = plaintext(await cap.stop());
  assert.deepEqual(bad.slice(0, 5), [], "nothing in clear");
  // The agent's next start brings charon back; the pair heals.
  const r = await a.enc!.start(a.local);
  assert.equal(r.adopted, false);
  await a.enc!.sync(
    nodes.map((n) => ({
      name: n.local.name,
      underlay: n.local.underlay,
      podCIDRs: n.local.podCIDRs,
      data: { ike: "psk", id: n.addr, pskGeneration: 1 },
    })),
  );
  await waitFor("the pair to heal after charon's restart", () => ping(a, b), 60_000);
});
