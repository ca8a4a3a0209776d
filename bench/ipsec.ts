// weft-IPsec against the same charon/kernel-libipsec wired by hand, between the same two node
// namespaces (a veth underlay, a pod namespace behind each node): pod-to-pod iperf3 across the
// tunnel, 1 and 4 streams, the two setups interleaved round by round; medians with min-max and the
// load average beside them. Goal: weft >= 0.95x hand-wired. Prints a markdown table.
//   node dist-bench/bench/ipsec.js [--rounds 3] [--seconds 8]
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { run } from "../src/kernel/exec.js";
import { charonPaths, loadSwanctl, removeCharonFiles, startCharon, stopCharon } from "../src/kernel/charon.js";
import { createIpsec, PSK_FILE } from "../src/encryption/ipsec/index.js";
import type { Encryption } from "../src/encryption/types.js";
import { addNetns, delNetns } from "./lib.js";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const ROUNDS = arg("rounds", 3);
const SECONDS = arg("seconds", 8);
const id = randomBytes(2).toString("hex");
const psk = randomBytes(32).toString("hex");
const nodes = [1, 2].map((i) => ({
  i,
  ns: `/run/netns/ipb${id}n${i}`,
  pod: `/run/netns/ipb${id}p${i}`,
  addr: `10.75.0.${i}`,
  podCidr: `10.74.${i}.0/24`,
  podIp: `10.74.${i}.2`,
  dir: "",
}));
const sh = (argv: string[], netns?: string) => run(argv, netns ? { netns, timeoutMs: 120_000 } : {});

async function setup(): Promise<void> {
  for (const n of nodes) {
    await addNetns(n.ns.split("/").pop()!);
    await addNetns(n.pod.split("/").pop()!);
    n.dir = mkdtempSync(`/tmp/wipb-${n.i}-`);
    writeFileSync(`${n.dir}/${PSK_FILE}`, JSON.stringify({ generations: [{ id: 1, hex: psk }] }), { mode: 0o600 });
  }
  await sh(["ip", "link", "add", "u1", "netns", nodes[0].ns, "type", "veth", "peer", "u2", "netns", nodes[1].ns]);
  for (const n of nodes) {
    const peer = nodes.find((x) => x !== n)!;
    await sh(["ip", "link", "set", "lo", "up"], n.ns);
    await sh(["ip", "addr", "add", `${n.addr}/24`, "dev", `u${n.i}`], n.ns);
    await sh(["ip", "link", "set", `u${n.i}`, "up"], n.ns);
    await sh(["ip", "link", "add", "pv", "type", "veth", "peer", "eth0", "netns", n.pod], n.ns);
    await sh(["ip", "addr", "add", `10.74.${n.i}.1/24`, "dev", "pv"], n.ns);
    await sh(["ip", "link", "set", "pv", "up"], n.ns);
    await sh(["sysctl", "-qw", "net.ipv4.ip_forward=1"], n.ns);
    await sh(["ip", "route", "add", peer.podCidr, "via", peer.addr], n.ns);
    await sh(["ip", "link", "set", "lo", "up"], n.pod);
    await sh(["ip", "addr", "add", `${n.podIp}/24`, "dev", "eth0"], n.pod);
    await sh(["ip", "link", "set", "eth0", "up"], n.pod);
    await sh(["ip", "route", "add", "default", "via", `10.74.${n.i}.1`], n.pod);
  }
  await sh(["iperf3", "-s", "-D", "--pidfile", `/tmp/wipb-${id}-iperf.pid`], nodes[1].pod);
}

/** The hand-wired setup: the same charon, a swanctl.conf written out by hand, no guard. */
async function handUp(): Promise<void> {
  for (const n of nodes) {
    const peer = nodes.find((x) => x !== n)!;
    const p = charonPaths(`${n.dir}/hand`);
    await startCharon(p, { netns: n.ns });
    await loadSwanctl(
      p,
      `connections {
  hand {
    version = 2
    local_addrs = ${n.addr}
    remote_addrs = ${peer.addr}
    proposals = aes128-sha256-modp2048
    encap = yes
    local { auth = psk
      id = ${n.addr} }
    remote { auth = psk
      id = ${peer.addr} }
    children {
      hand {
        local_ts = ${n.podCidr}
        remote_ts = ${peer.podCidr}
        esp_proposals = aes128-sha256
        start_action = ${n.i === 1 ? "start" : "trap"}
      }
    }
  }
}
secrets {
  ike-1 { id-1 = ${n.addr}
    id-2 = ${peer.addr}
    secret = 0x${psk} }
}
`,
      true,
    );
  }
}

async function handDown(): Promise<void> {
  for (const n of nodes) {
    const p = charonPaths(`${n.dir}/hand`);
    await stopCharon(p);
    await removeCharonFiles(p);
  }
}

let encs: Encryption[] = [];
async function weftUp(): Promise<void> {
  encs = nodes.map((n) => createIpsec({ stateDir: n.dir, kernel: { netns: n.ns }, strict: true }));
  const peers = [];
  for (const [k, n] of nodes.entries()) {
    const r = await encs[k].start({
      name: `n${n.i}`,
      underlay: { ipv4: n.addr },
      podCIDRs: { ipv4: n.podCidr },
      clusterCIDRs: ["10.74.0.0/16"],
    });
    peers.push({ name: `n${n.i}`, underlay: { ipv4: n.addr }, podCIDRs: { ipv4: n.podCidr }, data: r.data });
  }
  for (const e of encs) await e.sync(peers);
}
async function weftDown(): Promise<void> {
  for (const e of encs) await e.stop({ teardown: true });
}

async function waitPing(): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const r = await run(["busybox", "ping", "-c", "1", "-W", "1", nodes[1].podIp], { netns: nodes[0].pod }).then(
      () => true,
      () => false,
    );
    if (r) return;
  }
  throw new Error("the tunnel did not come up");
}

async function iperf(streams: number): Promise<number> {
  const out = await sh(
    ["iperf3", "-c", nodes[1].podIp, "-t", String(SECONDS), "-P", String(streams), "-J"],
    nodes[0].pod,
  );
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const res: Record<string, number[]> = {};
  const load: string[] = [];
  try {
    await setup();
    for (let r = 0; r < ROUNDS; r++)
      for (const mode of r % 2 ? (["weft", "hand"] as const) : (["hand", "weft"] as const)) {
        await (mode === "hand" ? handUp() : weftUp());
        await waitPing();
        for (const streams of [1, 4]) {
          load.push(readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "));
          const g = await iperf(streams);
          (res[`${mode}-${streams}`] ??= []).push(g);
          process.stderr.write(`round ${r + 1} ${mode} ${streams} stream(s): ${g.toFixed(3)} Gbit/s\n`);
        }
        await (mode === "hand" ? handDown() : weftDown());
      }
  } finally {
    try {
      process.kill(Number(readFileSync(`/tmp/wipb-${id}-iperf.pid`, "utf8").trim()), "SIGTERM");
    } catch {
      // not started
    }
    await handDown().catch(() => undefined);
    await weftDown().catch(() => undefined);
    for (const n of nodes) {
      await delNetns(n.pod.split("/").pop()!).catch(() => undefined);
      await delNetns(n.ns.split("/").pop()!).catch(() => undefined);
      rmSync(n.dir, { recursive: true, force: true });
    }
  }
  const fmt = (xs: number[]) =>
    `${median(xs).toFixed(3)} [${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)}]`;
  console.log(`| streams | hand-wired charon/libipsec (Gbit/s) | weft-IPsec (Gbit/s) | ratio of medians |`);
  console.log(`|---|---|---|---|`);
  for (const s of [1, 4])
    console.log(
      `| ${s} | ${fmt(res[`hand-${s}`])} | ${fmt(res[`weft-${s}`])} | ${(median(res[`weft-${s}`]) / median(res[`hand-${s}`])).toFixed(3)} |`,
    );
  console.log(
    `\n${ROUNDS} interleaved rounds of ${SECONDS} s; load average (1/5/15 min) before each run: ${load.join("; ")}`,
  );
}

await main();
