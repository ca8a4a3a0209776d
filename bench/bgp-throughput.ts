// Pod-to-pod TCP throughput across racks over BGP routes, against the bare underlay routed the same
// way. The lab: `weft lab up --backend bgp --racks 2 --nodes 2` (n1 in rack r1, n2 in rack r2, each
// behind its FRR ToR), the mesh off and a BGPPeer per node to its ToR (eBGP): the pod traffic goes
// pod -> n2 -> ToR r2 -> ToR r1 -> n1 -> pod on routes BIRD announced and FRR installed, no overlay.
// The baseline, same lab and run, interleaved: two namespaces with no weft state, one on each rack's
// segment (10.250.R.200, default route to the ToR), so bare -> ToR r2 -> ToR r1 -> bare. Also node
// to node (n2's namespace to n1's underlay address) for the cost of the nodes alone. The load average
// of the machine is read before and after every round (other work on the machine skews the figures).
//   node dist-bench/bench/bgp-throughput.js [--seconds 5] [--rounds 3] [--streams 1,4]
import { loadavg } from "node:os";
import { join } from "node:path";
import { plugIntoBridge } from "../src/kernel/bridge.js";
import {
  BenchLab,
  addNetns,
  benchArg,
  benchList,
  capture,
  delNetns,
  fmt,
  iperf,
  machine,
  podManifest,
  progress,
  repoRoot,
  sleep,
  summary,
  today,
  verdict,
  writeSection,
} from "./lib.js";

const B = "bgp-throughput";
const SECONDS = benchArg("seconds", 5);
const ROUNDS = benchArg("rounds", 3);
const STREAMS = benchList("streams", ["1", "4"]).map(Number);
const GOAL = 0.97;

type Path = "bare" | "node-to-node" | "pod-to-pod";
const PATHS: Path[] = ["bare", "node-to-node", "pod-to-pod"];
const WHAT: Record<Path, string> = {
  bare: "bare: no-weft namespace on rack r2 -> no-weft namespace on rack r1, through both ToRs",
  "node-to-node": "node n2 -> node n1 (underlay addresses), through both ToRs",
  "pod-to-pod": "pod on n2 (rack r2) -> pod on n1 (rack r1), over BGP routes",
};

async function main(): Promise<void> {
  const lab = new BenchLab("bt-tp");
  const bare = [`${lab.id}-bare1`, `${lab.id}-bare2`];
  const res: Partial<Record<Path, Record<number, number[]>>> = {};
  const loads: number[] = [];
  progress(B, `lab ${lab.id}: up (2 nodes, 2 racks)`);
  try {
    await lab.weft(["lab", "up", "--nodes", "2", "--backend", "bgp", "--racks", "2"]);
    const peers = [1, 2].map((r) => ({
      apiVersion: "weft.dev/v1",
      kind: "BGPPeer",
      metadata: { name: `tor-r${r}` },
      spec: { node: `n${r}`, peerAddress: `10.250.${r}.1`, asNumber: 65000 + r, bfd: true },
    }));
    await lab.apply([
      {
        apiVersion: "weft.dev/v1",
        kind: "BGPConfiguration",
        metadata: { name: "default" },
        spec: { asNumber: 64512, nodeToNodeMesh: false },
      },
      ...peers,
      podManifest("srv", "n1", { app: "srv" }),
      podManifest("cli", "n2", { app: "cli" }),
    ]);
    const st = lab.state();
    const srv = lab.pod("default/srv");
    const cli = lab.pod("default/cli");
    const ns = (n: string) => `/run/netns/${n}`;
    // The bare hosts: one per rack segment, default route to the rack's ToR.
    for (const r of [1, 2]) {
      await addNetns(bare[r - 1]);
      await plugIntoBridge({
        bridgeNs: st.tors![r - 1].netns,
        bridge: "br0",
        port: "bare",
        hostNs: bare[r - 1],
        uplink: "eth0",
        addresses: [`10.250.${r}.200`],
        gateways: [`10.250.${r}.1`],
      });
    }
    // Wait until the pod route is in place (ToR r2 has n1's CIDR from ToR r1) and every path answers.
    for (let until = Date.now() + 60_000; ;) {
      const ok = await Promise.all([
        capture(["nsenter", `--net=${ns(cli.netns)}`, "--", "busybox", "ping", "-c", "1", "-W", "1", srv.ips[0]]),
        capture(["nsenter", `--net=${ns(bare[1])}`, "--", "busybox", "ping", "-c", "1", "-W", "1", "10.250.1.200"]),
      ]);
      if (ok.every((x) => x.code === 0)) break;
      if (Date.now() > until)
        throw new Error(`no route across the racks after 60 s: ${ok.map((x) => x.stdout).join(" ")}`);
      await sleep(500);
    }
    const vx = await capture([
      "nsenter",
      `--net=${ns(st.nodes[0].netns)}`,
      "--",
      "ip",
      "-d",
      "link",
      "show",
      "type",
      "vxlan",
    ]);
    if (vx.stdout.trim()) throw new Error(`n1 has a vxlan device: ${vx.stdout}`);
    const runs: Record<Path, [string, string, string]> = {
      bare: [ns(bare[0]), ns(bare[1]), "10.250.1.200"],
      "node-to-node": [ns(st.nodes[0].netns), ns(st.nodes[1].netns), st.nodes[0].ipv4],
      "pod-to-pod": [ns(srv.netns), ns(cli.netns), srv.ips[0]],
    };
    for (let r = 0; r < ROUNDS; r++) {
      loads.push(loadavg()[0]);
      for (const streams of STREAMS) {
        // Interleaved, so slow drifts of the machine's load hit every path alike.
        for (const path of PATHS) {
          const [s, c, addr] = runs[path];
          const g = await iperf(s, c, addr, streams, SECONDS);
          ((res[path] ??= {})[streams] ??= []).push(g);
          progress(B, `round ${r + 1}/${ROUNDS} ${path} P=${streams}: ${fmt(g)} Gbit/s (load ${fmt(loadavg()[0])})`);
        }
      }
      loads.push(loadavg()[0]);
    }
  } finally {
    for (const b of bare) await delNetns(b);
    await lab.down();
  }
  report(res, loads);
}

function report(res: Partial<Record<Path, Record<number, number[]>>>, loads: number[]): void {
  const rows: string[] = [];
  for (const streams of STREAMS) {
    const bare = summary(res.bare?.[streams] ?? []).p50;
    for (const path of PATHS) {
      const xs = res[path]?.[streams] ?? [];
      const s = summary(xs);
      const ratio = s.p50 / bare;
      const goal =
        path === "pod-to-pod" ? `>= ${GOAL}x: ${verdict(ratio >= GOAL)}` : path === "bare" ? "(the limit)" : "-";
      rows.push(
        `| ${WHAT[path]} | ${streams} | ${fmt(s.p50)} | ${fmt(Math.min(...xs))} - ${fmt(Math.max(...xs))} | ${path === "bare" ? "1.00" : fmt(ratio)} | ${goal} |`,
      );
    }
  }
  const l = summary(loads);
  const body = `## BGP: pod-to-pod throughput across racks (bench/bgp-throughput.ts)

${today()} on ${machine()}. A rack lab: \`weft lab up --backend bgp --racks 2 --nodes 2\` (n1 in rack r1, n2 in
rack r2, each rack its own L2 segment behind an FRR 8.4 ToR, the ToRs on a shared fabric segment), a
BGPConfiguration with the mesh off and a BGPPeer per node to its ToR (eBGP, BFD on): pod traffic crosses
pod -> n2 -> ToR r2 -> ToR r1 -> n1 -> pod on the routes BIRD announced and FRR installed, no overlay (the
bench checks n1 has no vxlan device). iperf3 TCP, ${STREAMS.join(" and ")} stream(s), ${SECONDS} s each, ${ROUNDS}
rounds, the paths interleaved within each round; median and min - max over the rounds. The baseline, same
lab and run: two namespaces with no weft state, one on each rack's segment (default route to its ToR),
so bare -> ToR r2 -> ToR r1 -> bare: the same routers, two forwarding steps (the nodes) fewer than the
pods' path. Load average (1 min) on this shared 2-core machine during the run: median ${fmt(l.p50)}, range
${fmt(Math.min(...loads))} - ${fmt(Math.max(...loads))} (read before and after each round).

| path | streams | Gbit/s (median) | min - max | x bare | goal |
|---|---|---|---|---|---|
${rows.join("\n")}
`;
  writeSection(join(repoRoot, "docs", "benchmarks.md"), "bgp-throughput", body);
  process.stdout.write(body + "\n");
}

main().catch((e: unknown) => {
  process.stderr.write(`${B}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
