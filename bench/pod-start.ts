// Pod start on real nodes: from `kubectl apply` of a pod to Running and connected (a TCP connection
// from its node to the pod's port 80 accepted), weft against the reference bridge + host-local
// plugins, on one `weft lab up --kubelet real` lab in the same run: n1's CNI is weft (deploy/weft.yaml,
// its DaemonSet held to n1), n2's the reference conflist. Rounds interleave the two (order alternating),
// one pod at a time, each pod deleted before the next round.
//   node dist-bench/bench/pod-start.js [--n 50]
import { existsSync } from "node:fs";
import { join } from "node:path";
import { runStatus } from "../src/kernel/exec.js";
import { netnsPathOf } from "../src/lab/names.js";
import { RealLab } from "../src/e2e/realnode/fixture.js";
import { installBridgeCni, podManifest, renderManifest, weftImage } from "../src/e2e/realnode/manifest.js";
import { benchArg, fmt, machine, progress, quantile, repoRoot, today, writeSection } from "./lib.js";

const N = benchArg("n", 50);
const B = "pod-start";

// Connects from the node to IP:80 every 20 ms until accepted (at most 120 s).
const CONNECT = `
const net = require("net"); const ip = process.argv[1]; const until = Date.now() + 120000;
const once = () => { const s = net.connect(80, ip); s.setTimeout(500);
  const retry = () => { s.destroy(); if (Date.now() > until) process.exit(1); setTimeout(once, 20); };
  s.on("connect", () => { s.destroy(); process.exit(0); }); s.on("error", retry); s.on("timeout", retry); };
once();`;

async function main(): Promise<void> {
  const lab = new RealLab();
  progress(B, `lab ${lab.id} up (2 real nodes)`);
  await lab.up(["--nodes", "2"]);
  try {
    const st = lab.state();
    const nodes = await lab.waitFor(
      "podCIDRs",
      async () => {
        const ns = await lab.nodes();
        return ns.length === 2 && ns.every((n) => n.spec?.podCIDRs?.length) ? ns : undefined;
      },
      120_000,
    );
    // n2: the reference plugins.
    const n2 = st.nodes.find((n) => n.name === "n2")!;
    const cidrs2 = nodes.find((n) => n.metadata.name === "n2")!.spec!.podCIDRs!;
    installBridgeCni(n2, cidrs2);
    // n1: weft, installed as users install it, its DaemonSet held to n1.
    const manifest = renderManifest(weftImage(), { "kubernetes.io/hostname": "n1" });
    await lab.kubectl(["apply", "-f", "-"], manifest);
    await lab.waitFor(
      "both nodes Ready",
      async () => {
        const ns = await lab.nodes();
        return ns.every((n) => n.status?.conditions?.find((c) => c.type === "Ready")?.status === "True")
          ? true
          : undefined;
      },
      300_000,
    );

    const samples: Record<string, number[]> = { weft: [], bridge: [] };
    const one = async (cni: "weft" | "bridge", i: number): Promise<number> => {
      const node = cni === "weft" ? "n1" : "n2";
      const name = `ps-${cni}-${i}`;
      const t0 = performance.now();
      await lab.kubectl(["apply", "-f", "-"], podManifest(name, node));
      const ip = await lab.waitFor(
        `${name} Running`,
        async () => {
          const p = JSON.parse(await lab.kubectl(["get", "pod", name, "-o", "json"])) as {
            status: { phase?: string; podIP?: string };
          };
          return p.status.phase === "Running" && p.status.podIP ? p.status.podIP : undefined;
        },
        120_000,
      );
      const netns = netnsPathOf(st.nodes.find((n) => n.name === node)!.netns);
      const c = await runStatus(["nsenter", `--net=${netns}`, "--", process.execPath, "-e", CONNECT, ip], {
        timeoutMs: 130_000,
      });
      if (c.code !== 0) throw new Error(`${name} (${ip}) not connected: ${c.stderr}`);
      const ms = performance.now() - t0;
      await lab.kubectl(["delete", "pod", name, "--wait=true", "--timeout=120s"]);
      return ms;
    };
    for (let i = 0; i < N; i++) {
      const order: Array<"weft" | "bridge"> = i % 2 ? ["bridge", "weft"] : ["weft", "bridge"];
      for (const cni of order) samples[cni].push(await one(cni, i));
      progress(B, `round ${i + 1}/${N}: weft ${fmt(samples.weft[i], 0)} ms, bridge ${fmt(samples.bridge[i], 0)} ms`);
    }
    const stat = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return { p50: quantile(s, 0.5), p99: s.length >= 100 ? quantile(s, 0.99) : NaN, max: s[s.length - 1] };
    };
    const w = stat(samples.weft);
    const b = stat(samples.bridge);
    const ratio = w.p50 / b.p50;
    const p99 = N >= 100;
    const body = `## Pod start on a real node (bench/pod-start.ts)

${today()} on ${machine()}. One \`weft lab up --kubelet real\` lab (containerd 1.6 CRI, kubelet 1.20.2):
node n1's CNI is weft (deploy/weft.yaml, its DaemonSet held to n1), node n2's the reference bridge +
host-local conflist. n = ${N} pods per CNI (\`localhost/weft/lab-pod:1\`), one at a time, rounds
interleaved (order alternating), each pod deleted before the next round. Time from \`kubectl apply\`
to the pod Running (polled with kubectl) and a TCP connection from its node to its port 80 accepted.

| CNI | p50 ms | ${p99 ? "p99 ms | " : ""}max ms |
|---|---|${p99 ? "---|" : ""}---|
| weft | ${fmt(w.p50, 0)} | ${p99 ? `${fmt(w.p99, 0)} | ` : ""}${fmt(w.max, 0)} |
| bridge + host-local | ${fmt(b.p50, 0)} | ${p99 ? `${fmt(b.p99, 0)} | ` : ""}${fmt(b.max, 0)} |

p50 ratio weft / reference: **${fmt(ratio, 3)}** (target <= 1.05).${p99 ? "" : ` p99 is not given: it needs >= 100 samples (\`--n 100\`).`}
The two CNIs run on different nodes of the same lab (one conf dir per node); the nodes are alike
(same binaries, same images, same machine).`;
    writeSection(join(repoRoot, "docs", "benchmarks.md"), "pod-start", body);
    process.stdout.write(`${body}\n`);
  } finally {
    const d = await lab.down();
    if (d.code !== 0) process.stderr.write(`lab down: ${d.stderr}\n`);
    if (existsSync(lab.dir)) process.stderr.write(`lab directory ${lab.dir} left\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${B}: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
