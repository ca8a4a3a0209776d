// Per-packet and per-connection cost of NetworkPolicy enforcement: single-stream TCP throughput
// (iperf3) and new TCP connections per second between two pods on two nodes, with 0, 1,000 and
// 10,000 NetworkPolicies in their namespace. Most policies select other pods; about 1% select the
// server (ingress) or the client (egress) with allow rules, so every new connection is evaluated
// against several policies. The 0-policy figure, measured in the same lab and run, is the baseline.
//   node dist-bench/bench/policy-cost.js [--levels 0,1000,10000] [--seconds 5] [--rounds 3] [--parallel 4] [--backend host-gw]
import { connect } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BenchLab,
  barChart,
  benchArg,
  benchList,
  fmt,
  iperf,
  machine,
  podManifest,
  progress,
  repoRoot,
  sleep,
  summary,
  capture,
  today,
  verdict,
  writeSection,
} from "./lib.js";
import { nftListTable } from "../src/kernel/nft.js";
import { openStore } from "../src/store/index.js";
import type { ObjectInput } from "../src/store/types.js";

const B = "policy-cost";
const LEVELS = benchList("levels", ["0", "1000", "10000"]).map(Number);
const SECONDS = benchArg("seconds", 5);
const ROUNDS = benchArg("rounds", 3);
const PARALLEL = benchArg("parallel", 4);
const BACKEND = benchList("backend", ["host-gw"])[0];
const CHUNK = 2000;
/** How policies are created: "cli" = `weft apply -f -` with one List per CHUNK, "store" = the store API, 16 writes in flight. */
const CREATE = benchList("create", ["store"])[0];

/** Policy i of the synthetic set: 1 in 200 selects the server, 1 in 200 the client, the rest other pods. */
function policy(i: number): object {
  const meta = { name: `wb-p${i}`, namespace: "default" };
  const base = { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: meta };
  if (i % 200 === 0) {
    return {
      ...base,
      spec: {
        podSelector: { matchLabels: { app: "srv" } },
        policyTypes: ["Ingress"],
        ingress: [{ from: [{ podSelector: { matchLabels: { app: "cli" } } }] }],
      },
    };
  }
  if (i % 200 === 100) {
    return {
      ...base,
      spec: {
        podSelector: { matchLabels: { app: "cli" } },
        policyTypes: ["Egress"],
        egress: [
          { to: [{ podSelector: { matchLabels: { app: "srv" } } }] },
          { to: [{ ipBlock: { cidr: `10.${100 + (i % 100)}.0.0/16` } }], ports: [{ protocol: "UDP", port: 53 }] },
        ],
      },
    };
  }
  if (i % 20 === 1) {
    // Selects the server too, but allows only other peers: evaluated, does not match.
    return {
      ...base,
      spec: {
        podSelector: { matchLabels: { app: "srv" } },
        policyTypes: ["Ingress"],
        ingress: [
          {
            from: [{ podSelector: { matchLabels: { role: `r${i}` } } }],
            ports: [{ protocol: "TCP", port: 1000 + (i % 5000) }],
          },
        ],
      },
    };
  }
  return {
    ...base,
    spec: {
      podSelector: { matchLabels: { app: `other${i}` } },
      policyTypes: ["Ingress", "Egress"],
      ingress: [
        { from: [{ podSelector: { matchLabels: { role: `r${i % 50}` } } }], ports: [{ protocol: "TCP", port: 8080 }] },
      ],
      egress: [{ to: [{ namespaceSelector: { matchLabels: { team: `t${i % 10}` } } }] }],
    },
  };
}

/** The connection client, run inside the client pod: PAR loops of connect + RST-close for S seconds. */
async function connClient(host: string, port: number, seconds: number, par: number): Promise<void> {
  const end = Date.now() + seconds * 1000;
  let ok = 0,
    failed = 0;
  await Promise.all(
    Array.from({ length: par }, async () => {
      while (Date.now() < end) {
        await new Promise<void>((resolve) => {
          const s = connect({ host, port });
          s.setTimeout(2000, () => {
            failed++;
            s.destroy();
            resolve();
          });
          // RST on close: no TIME_WAIT, so the loop never runs out of ports.
          s.once("connect", () => {
            ok++;
            s.resetAndDestroy();
            resolve();
          });
          s.once("error", () => {
            failed++;
            resolve();
          });
        });
      }
    }),
  );
  process.stdout.write(JSON.stringify({ ok, failed, seconds }) + "\n");
}

async function connRate(clientNs: string, host: string): Promise<number> {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const r = await capture(
    [
      "nsenter",
      `--net=${clientNs}`,
      "--",
      process.execPath,
      fileURLToPath(import.meta.url),
      "--conn-client",
      host,
      "80",
      String(SECONDS),
      String(PARALLEL),
    ],
    env,
  );
  if (r.code !== 0) throw new Error(`connection client failed: ${r.stderr.trim()}`);
  const j = JSON.parse(r.stdout) as { ok: number; failed: number; seconds: number };
  if (j.failed > j.ok / 100) throw new Error(`connection client: ${j.failed} of ${j.ok + j.failed} connections failed`);
  return j.ok / j.seconds;
}

/**
 * Waits until the agents have programmed the first `count` policies: n1's table has an ingress
 * chain (pi_*) for each policy selecting the server, n2's an egress chain (pe_*) for each selecting
 * the client, and neither table has changed for a while. Returns ms until the last change.
 */
async function settle(lab: BenchLab, count: number, minStableMs = 2000, maxMs = 600_000): Promise<number> {
  let wantIn = 0,
    wantOut = 0;
  for (let i = 0; i < count; i++) {
    if (i % 200 === 0 || (i % 20 === 1 && i % 200 !== 100)) wantIn++;
    if (i % 200 === 100) wantOut++;
  }
  const t0 = Date.now();
  let last = "",
    since = Date.now();
  while (Date.now() - t0 < maxMs) {
    const [a, b] = await Promise.all(
      ["n1", "n2"].map(
        async (n) =>
          (await nftListTable("weft", { netns: lab.nodeNetns(n) }))?.replace(/packets \d+ bytes \d+/g, "") ?? "",
      ),
    );
    const chainsIn = (a.match(/\bchain pi_/g) ?? []).length,
      chainsOut = (b.match(/\bchain pe_/g) ?? []).length;
    const sig = `${a.length}:${chainsIn}|${b.length}:${chainsOut}`;
    if (sig !== last) {
      last = sig;
      since = Date.now();
    } else if (chainsIn >= wantIn && chainsOut >= wantOut && Date.now() - since >= minStableMs) return since - t0;
    await sleep(500);
  }
  throw new Error(`the nodes' nft tables did not show the ${count} policies' chains within ${maxMs} ms`);
}

interface Level {
  policies: number;
  createMs: number;
  settleMs: number;
  gbps: number[];
  cps: number[];
}

async function main(): Promise<void> {
  const lab = new BenchLab("wb-pc");
  const levels: Level[] = [];
  progress(B, `lab ${lab.id}: up (2 nodes, ${BACKEND})`);
  try {
    await lab.up(2, BACKEND);
    await lab.apply([podManifest("srv", "n1", { app: "srv" }), podManifest("cli", "n2", { app: "cli" })]);
    const srv = lab.pod("default/srv"),
      cli = lab.pod("default/cli");
    const srvNs = `/run/netns/${srv.netns}`,
      cliNs = `/run/netns/${cli.netns}`;
    let have = 0;
    for (const target of LEVELS) {
      // Create the missing policies through the CLI, CHUNK per `weft apply -f -` (one List each).
      const t0 = Date.now();
      if (CREATE === "cli") {
        for (let from = have; from < target; from += CHUNK) {
          const items = Array.from({ length: Math.min(CHUNK, target - from) }, (_, k) => policy(from + k));
          await lab.weft(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
          progress(B, `created ${from + items.length}/${target} policies (${fmt((Date.now() - t0) / 1000, 1)} s)`);
        }
      } else if (target > have) {
        const store = openStore({ kind: "etcd", endpoints: [lab.state().etcd[0].clientUrl] });
        try {
          let next = have;
          await Promise.all(
            Array.from({ length: 16 }, async () => {
              while (next < target) {
                const i = next++;
                await store.objects.apply(policy(i) as ObjectInput);
                if ((i + 1) % 1000 === 0)
                  progress(B, `created ${i + 1}/${target} policies (${fmt((Date.now() - t0) / 1000, 1)} s)`);
              }
            }),
          );
        } finally {
          await store.close();
        }
      }
      const createMs = target > have ? Date.now() - t0 : 0;
      have = Math.max(have, target);
      const settleMs = await settle(lab, target);
      const lv: Level = { policies: target, createMs, settleMs, gbps: [], cps: [] };
      progress(
        B,
        `${target} policies: created in ${fmt(createMs / 1000, 1)} s, programmed ${fmt(settleMs / 1000, 1)} s later`,
      );
      for (let r = 0; r < ROUNDS; r++) {
        lv.gbps.push(await iperf(srvNs, cliNs, srv.ips[0], 1, SECONDS));
        lv.cps.push(await connRate(cliNs, srv.ips[0]));
        progress(
          B,
          `${target} policies, round ${r + 1}/${ROUNDS}: ${fmt(lv.gbps.at(-1)!)} Gbit/s, ${fmt(lv.cps.at(-1)!, 0)} connections/s`,
        );
      }
      levels.push(lv);
    }
  } finally {
    await lab.down();
  }
  report(levels);
}

function report(levels: Level[]): void {
  const base = levels.find((l) => l.policies === 0) ?? levels[0];
  const g0 = summary(base.gbps).p50,
    c0 = summary(base.cps).p50;
  const rows = levels.map((l) => {
    const g = summary(l.gbps).p50,
      c = summary(l.cps).p50;
    const goal =
      l.policies >= 10_000
        ? `throughput >= 0.95x: ${verdict(g / g0 >= 0.95)}; connections >= 0.9x: ${verdict(c / c0 >= 0.9)}`
        : l === base
          ? "(baseline)"
          : "-";
    return `| ${l.policies} | ${l.policies ? fmt(l.createMs / 1000, 1) + " s" : "-"} | ${l.policies ? fmt(l.settleMs / 1000, 1) + " s" : "-"} | ${fmt(g)} | ${fmt(g / g0)} | ${fmt(c, 0)} | ${fmt(c / c0)} | ${goal} |`;
  });
  const body = `## Policy cost per packet and per connection (bench/policy-cost.ts)

${today()} on ${machine()}. A 2-node lab (${BACKEND}); server pod on n1, client pod on n2, both in namespace
default. At each level that many NetworkPolicies are in the namespace: 1 in 200 selects the server
and allows the client, 1 in 200 selects the client and allows egress to the server, 1 in 20
selects the server but allows only other peers and ports (evaluated, never matching), the rest
select other pods. They are created ${CREATE === "cli" ? `with \`weft apply -f -\`, ${CHUNK} per List` : "through the store API (src/store), 16 writes in flight"}; "programmed" is how
long after that both nodes' nft tables stopped changing. Then, ${ROUNDS} round(s) each (median):
iperf3, 1 TCP stream, ${SECONDS} s; and new TCP connections per second (connect, then close with RST),
${PARALLEL} loops in parallel for ${SECONDS} s, from a Node.js client in the client pod to the server pod's
port 80. Baseline: the same with no policy at all, same lab and run. Goal at 10,000 policies:
throughput >= 0.95x and connection rate >= 0.9x the 0-policy figures.

| policies | created in | programmed after | Gbit/s | x baseline | connections/s | x baseline | goal |
|---|---|---|---|---|---|---|---|
${rows.join("\n")}

![Policy cost](bench-policy-cost.svg)
`;
  writeSection(join(repoRoot, "docs", "benchmarks.md"), "policy-cost", body);
  const bars = levels.flatMap((l) => [
    { label: `${l.policies} policies, throughput`, value: (summary(l.gbps).p50 / g0) * 100, group: "throughput" },
    {
      label: `${l.policies} policies, connections/s`,
      value: (summary(l.cps).p50 / c0) * 100,
      group: "connection rate",
    },
  ]);
  writeFileSync(
    join(repoRoot, "docs", "bench-policy-cost.svg"),
    barChart("Policy cost: % of the 0-policy figure (higher is better)", "%", bars),
  );
  process.stdout.write(body + "\n");
}

const ci = process.argv.indexOf("--conn-client");
(ci >= 0
  ? connClient(
      process.argv[ci + 1],
      Number(process.argv[ci + 2]),
      Number(process.argv[ci + 3]),
      Number(process.argv[ci + 4]),
    )
  : main()
).catch((e: unknown) => {
  process.stderr.write(`${B}: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
