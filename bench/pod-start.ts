// Pod start on a real node: from `kubectl apply` of a pod to Running and connected (a TCP connection
// from its node to the pod's port 80 accepted), weft against the reference bridge + host-local
// plugins on the same node in the same run, interleaved. One `weft lab up --kubelet real --nodes 1`
// lab: weft installed as users install it (deploy/weft.yaml); for a reference sample the bridge
// conflist is written as 05-bench-bridge.conflist, which containerd (max_conf_num 1, the first file by
// name) takes over weft's 10-weft.conflist, and removed again for a weft sample. The reference pods get
// a subnet of their own outside the cluster CIDRs (no address clash with weft's IPAM); every pod's
// address says which CNI wired it, and a sample wired by the other one is an error. One pod at a
// time, the order alternating per round, each pod deleted (its CNI DEL done) before the next sample.
//   node dist-bench/bench/pod-start.js [--n 50]
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runStatus } from "../src/kernel/exec.js";
import { netnsPathOf } from "../src/lab/names.js";
import { RealLab } from "../src/e2e/realnode/fixture.js";
import { installBridgeCni, podManifest, renderManifest, weftImage } from "../src/e2e/realnode/manifest.js";
import { inCidr } from "../src/e2e/cluster/fixture.js";
import { benchArg, fmt, machine, progress, quantile, repoRoot, today, writeSection } from "./lib.js";

const N = benchArg("n", 50);
const B = "pod-start";
const BRIDGE_FILE = "05-bench-bridge.conflist";
/** The reference pods' subnet: outside the lab's cluster CIDRs. */
const BRIDGE_SUBNET = "10.251.0.0/24";

// Connects from the node to IP:80 every 20 ms until accepted (at most 120 s).
const CONNECT = `
const net = require("net"); const ip = process.argv[1]; const until = Date.now() + 120000;
const once = () => { const s = net.connect(80, ip); s.setTimeout(500);
  const retry = () => { s.destroy(); if (Date.now() > until) process.exit(1); setTimeout(once, 20); };
  s.on("connect", () => { s.destroy(); process.exit(0); }); s.on("error", retry); s.on("timeout", retry); };
once();`;

async function main(): Promise<void> {
  const lab = new RealLab();
  // Stopped early (SIGINT/SIGTERM): the lab goes down all the same; the section holds what was written.
  const bail = (code: number) => void lab.down().finally(() => process.exit(code));
  process.once("SIGINT", () => bail(130));
  process.once("SIGTERM", () => bail(143));
  progress(B, `lab ${lab.id} up (1 real node)`);
  await lab.up(["--nodes", "1"]);
  try {
    const st = lab.state();
    const node = st.nodes[0];
    const nodes = await lab.waitFor(
      "podCIDRs",
      async () => {
        const ns = await lab.nodes();
        return ns.length === 1 && ns.every((n) => n.spec?.podCIDRs?.length) ? ns : undefined;
      },
      120_000,
    );
    const weftCidrs = nodes[0].spec!.podCIDRs!;
    await lab.kubectl(["apply", "-f", "-"], renderManifest(weftImage()));
    await lab.waitFor(
      "the node Ready with weft",
      async () => {
        const ns = await lab.nodes();
        return ns.every((n) => n.status?.conditions?.find((c) => c.type === "Ready")?.status === "True")
          ? true
          : undefined;
      },
      300_000,
    );
    const useCni = (cni: "weft" | "bridge") => {
      if (cni === "bridge") installBridgeCni(node, [BRIDGE_SUBNET], BRIDGE_FILE);
      else rmSync(join(node.cniConfDir, BRIDGE_FILE), { force: true });
    };
    const samples: Record<string, number[]> = { weft: [], bridge: [] };
    let misrouted = 0;
    const one = async (cni: "weft" | "bridge", i: number): Promise<number> => {
      const name = `ps-${cni}-${i}`;
      useCni(cni);
      const t0 = performance.now();
      await lab.kubectl(["apply", "-f", "-"], podManifest(name, node.name));
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
      const wired = inCidr(ip, BRIDGE_SUBNET) ? "bridge" : weftCidrs.some((c) => inCidr(ip, c)) ? "weft" : "?";
      if (wired !== cni) {
        // containerd had not reloaded its CNI config yet: the sample is not this CNI's; taken again.
        await lab.kubectl(["delete", "pod", name, "--wait=true", "--timeout=120s"]);
        if (++misrouted > 10) throw new Error(`${name} got ${ip}: wired by ${wired}, not ${cni} (10 times)`);
        return one(cni, i);
      }
      const netns = netnsPathOf(node.netns);
      const c = await runStatus(["nsenter", `--net=${netns}`, "--", process.execPath, "-e", CONNECT, ip], {
        timeoutMs: 130_000,
      });
      if (c.code !== 0) throw new Error(`${name} (${ip}) not connected: ${c.stderr}`);
      const ms = performance.now() - t0;
      await lab.kubectl(["delete", "pod", name, "--wait=true", "--timeout=120s"]);
      return ms;
    };
    const report = (n: number): string => {
      const stat = (xs: number[]) => {
        const s = [...xs].sort((a, b) => a - b);
        return {
          min: s[0],
          p25: quantile(s, 0.25),
          p50: quantile(s, 0.5),
          p75: quantile(s, 0.75),
          p99: s.length >= 100 ? quantile(s, 0.99) : NaN,
          max: s[s.length - 1],
        };
      };
      const w = stat(samples.weft);
      const b = stat(samples.bridge);
      const ratio = w.p50 / b.p50;
      const p99 = n >= 100;
      // The paired difference per round (same round, back to back): the node's drift cancels out.
      const diffs = samples.weft.map((w, i) => w - samples.bridge[i]).sort((x, y) => x - y);
      const row = (name: string, x: ReturnType<typeof stat>) =>
        `| ${name} | ${fmt(x.p50, 0)} | ${p99 ? `${fmt(x.p99, 0)} | ` : ""}${fmt(x.max, 0)} | ${fmt(x.min, 0)} | ${fmt(x.p25, 0)}-${fmt(x.p75, 0)} |`;
      const body = `## Pod start on a real node (bench/pod-start.ts)

${today()} on ${machine()}. One \`weft lab up --kubelet real --nodes 1\` lab (containerd 1.6 CRI,
kubelet 1.20.2), weft and the reference bridge + host-local plugins **on the same node, in the same
run, interleaved**: weft installed with deploy/weft.yaml; for a reference sample the bridge conflist is
written as \`${BRIDGE_FILE}\` (containerd takes the first conflist by name over \`10-weft.conflist\`),
its pods on ${BRIDGE_SUBNET} (outside the cluster CIDRs), and removed for a weft sample. Every pod's
address is checked to come from the CNI the sample is for (samples taken again because containerd had
not reloaded its config yet: ${misrouted}). n = ${n} pods per CNI
(\`localhost/weft/lab-pod:1\`), one at a time, the order alternating per round, each pod deleted before
the next sample. Time from \`kubectl apply\` to the pod Running (polled with kubectl, 250 ms) and a
TCP connection from its node to its port 80 accepted.

| CNI | p50 ms | ${p99 ? "p99 ms | " : ""}max ms | min ms | p25-p75 ms |
|---|---|${p99 ? "---|" : ""}---|---|---|
${row("weft", w)}
${row("bridge + host-local", b)}

p50 ratio weft / reference: **${fmt(ratio, 3)}** (target <= 1.05). Paired difference weft - reference
per round: median ${fmt(quantile(diffs, 0.5), 0)} ms, p25-p75 ${fmt(quantile(diffs, 0.25), 0)} to ${fmt(quantile(diffs, 0.75), 0)} ms.${p99 ? "" : ` p99 is not given: it needs >= 100 samples (\`--n 100\`).`}`;
      return body;
    };
    for (let i = 0; i < N; i++) {
      const order: Array<"weft" | "bridge"> = i % 2 ? ["bridge", "weft"] : ["weft", "bridge"];
      for (const cni of order) samples[cni].push(await one(cni, i));
      progress(B, `round ${i + 1}/${N}: weft ${fmt(samples.weft[i], 0)} ms, bridge ${fmt(samples.bridge[i], 0)} ms`);
      // From 50 rounds on, every 10: the section holds the rounds so far (a run cut short still reports).
      if (i + 1 >= 50 && (i + 1) % 10 === 0 && i + 1 < N)
        writeSection(join(repoRoot, "docs", "benchmarks.md"), "pod-start", report(i + 1));
    }
    const body = report(N);
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
