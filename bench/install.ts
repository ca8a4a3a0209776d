// Install and rolling upgrade on real nodes (issue 9), on `weft lab up --kubelet real` (containerd 1.6
// CRI, kubelet 1.20.2, kube-controller-manager, kube-scheduler). Each round:
// 1. `kubectl apply -f` of deploy/weft.yaml (rendered with the lab's image and API server address, as the
//    real-node tests apply it) until every node is Ready and the DaemonSet's numberReady = nodes;
// 2. a lab pod on each node; a rolling upgrade, `kubectl set image` of the DaemonSet to a second tag of
//    weft's image (scripts/image.sh --tag, imported into every node) until `kubectl rollout status`
//    returns, while a prober in each pod opens a TCP connection to the pod on every other node every
//    --interval ms: every failed probe is counted (the goal is none);
// 3. the pods deleted; `kubectl delete -f`, then the agents gone while every node keeps weft's conflist
//    and stays Ready (a runtime must never fall back to another network).
// Round 1 is a first install (the nodes NotReady until weft's conflist lands); later rounds reinstall
// over what the previous round's uninstall left (the conflist, so the nodes stay Ready), unless
// --fresh, which takes the lab down and brings a new one up before every round.
//   node dist-bench/bench/install.js [--rounds 5] [--nodes 2] [--interval 50] [--fresh]
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runStatus } from "../src/kernel/exec.js";
import { binaries, run } from "../src/lab/realnode/host.js";
import { ctr } from "../src/lab/realnode/node.js";
import { kubectlBinary } from "../src/testlib/kubectl.js";
import { RealLab, startProbers, watchNodeKernels, type NodeJson } from "../src/e2e/realnode/fixture.js";
import { podManifest, renderManifest, weftImage } from "../src/e2e/realnode/manifest.js";
import { benchArg, fmt, machine, progress, repoRoot, sleep, today, writeSection } from "./lib.js";

const ROUNDS = benchArg("rounds", 5);
const NODES = benchArg("nodes", 2);
const INTERVAL_MS = benchArg("interval", 50);
const FRESH = process.argv.includes("--fresh");
const PROBE_TIMEOUT_MS = 1000;
const UPGRADE_TAG = "bench-upgrade";
const B = "install";

interface Round {
  kind: "first install" | "reinstall";
  nodesReadyMs: number;
  installMs: number;
  upgradeMs: number;
  uninstallMs: number;
  probes: number;
  failed: number;
  maxProbeMs: number;
  /** weft's routes, neighbours or links deleted on any node during the upgrade (ip monitor). */
  kernelDeleted: string[];
  /** A node whose VTEP was recreated (another ifindex or MAC after the upgrade). */
  vtepChanged: string[];
  /** Failure windows, ms after `kubectl set image`. */
  windows: Array<{ from: string; target: string; at: number; to: number; n: number; errors: string[] }>;
}

interface DaemonSetJson {
  kind: "DaemonSet";
  metadata: { name: string; namespace: string; generation: number };
  status?: {
    numberReady?: number;
    updatedNumberScheduled?: number;
    observedGeneration?: number;
    desiredNumberScheduled?: number;
  };
}

const ready = (n: NodeJson) => n.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";

/** The DaemonSet has seen its latest spec and runs it, ready, on every node. */
const dsReady = (ds: DaemonSetJson | undefined): boolean => {
  const s = ds?.status ?? {};
  return (
    !!ds &&
    s.observedGeneration === ds.metadata.generation &&
    s.desiredNumberScheduled === NODES &&
    s.numberReady === NODES &&
    s.updatedNumberScheduled === NODES
  );
};

/** Nodes and weft's DaemonSet in one kubectl call (one poll). */
async function nodesAndDs(lab: RealLab): Promise<{ nodes: NodeJson[]; ds?: DaemonSetJson }> {
  const items = (
    JSON.parse(await lab.kubectl(["get", "nodes,daemonsets", "--all-namespaces", "-o", "json"])) as {
      items: Array<NodeJson & { kind: string; metadata: { namespace?: string } }>;
    }
  ).items;
  return {
    nodes: items.filter((i) => i.kind === "Node"),
    ds: items.find(
      (i) => i.kind === "DaemonSet" && i.metadata.name === "weft" && i.metadata.namespace === "kube-system",
    ) as unknown as DaemonSetJson | undefined,
  };
}

const weftPods = async (lab: RealLab): Promise<number> =>
  (
    JSON.parse(
      await lab.kubectl(["-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=weft", "-o", "json"]),
    ) as { items: unknown[] }
  ).items.length;

/** A new lab of NODES real nodes, with the upgrade image imported into every node's containerd. */
async function labUp(archive: string): Promise<RealLab> {
  const lab = new RealLab();
  current = lab;
  progress(B, `lab ${lab.id} up (${NODES} real nodes)`);
  await lab.up(["--nodes", String(NODES)]);
  const b = binaries();
  const st = lab.state();
  for (const n of st.nodes) {
    const real = st.real!.nodes.find((r) => r.name === n.name)!;
    run(ctr(b, n, real, ["images", "import", archive]), `import ${archive} into ${n.name}`, 300_000);
  }
  return lab;
}

async function labDown(lab: RealLab): Promise<void> {
  const d = await lab.down();
  if (current === lab) current = undefined;
  if (d.code !== 0) process.stderr.write(`lab down: ${d.stderr}\n`);
  if (existsSync(lab.dir)) process.stderr.write(`lab directory ${lab.dir} left\n`);
}

let current: RealLab | undefined;

async function round(lab: RealLab, i: number, manifest: string, tmp: string, first: boolean): Promise<Round> {
  const st = lab.state();
  const names = st.nodes.map((n) => n.name);
  // 1. Install: apply until every node is Ready and the DaemonSet ready on every node.
  let nodesReadyMs = NaN;
  const t0 = performance.now();
  await lab.kubectl(["apply", "-f", "-"], manifest);
  const installMs = await lab.waitFor(
    "every node Ready and weft's DaemonSet ready on every node",
    async () => {
      const { nodes, ds } = await nodesAndDs(lab);
      const now = performance.now() - t0;
      const allReady = nodes.length === NODES && nodes.every(ready);
      if (allReady && Number.isNaN(nodesReadyMs)) nodesReadyMs = now;
      return allReady && dsReady(ds) ? now : undefined;
    },
    300_000,
    () => lab.log("n1/kubelet.log", 1500),
  );

  // 2. A pod on each node; probers between them; the rolling upgrade.
  const pods = names.map((n) => `ib-${n}`);
  for (const [k, p] of pods.entries()) await lab.kubectl(["apply", "-f", "-"], podManifest(p, names[k]));
  const ips = await lab.waitFor(
    "the probe pods Running with an address",
    async () => {
      const all = await lab.pods();
      const ours = pods.map((p) => all.find((x) => x.metadata.name === p && x.metadata.namespace === "default"));
      return ours.every((p) => p?.status.phase === "Running" && p.status.podIP)
        ? ours.map((p) => p!.status.podIP!)
        : undefined;
    },
    180_000,
  );
  const probers = startProbers(
    lab,
    pods.map((p, k) => ({ key: `default/${p}`, ip: ips[k] })),
    { port: 80, intervalMs: INTERVAL_MS, timeoutMs: PROBE_TIMEOUT_MS, dir: tmp, tag: `r${i}` },
  );
  let stopped = false;
  try {
    await probers.ready();
    const kernel = await watchNodeKernels(lab);
    const t1 = performance.now();
    const setAt = Date.now();
    await lab.kubectl([
      "-n",
      "kube-system",
      "set",
      "image",
      "ds/weft",
      `weft=localhost/weft/weft:${UPGRADE_TAG}`,
      `install-cni=localhost/weft/weft:${UPGRADE_TAG}`,
    ]);
    const rs = await runStatus(
      [
        kubectlBinary(),
        "--kubeconfig",
        st.apiserver!.kubeconfig,
        "-n",
        "kube-system",
        "rollout",
        "status",
        "ds/weft",
        "--timeout=300s",
      ],
      { timeoutMs: 320_000 },
    );
    const upgradeMs = performance.now() - t1;
    if (rs.code !== 0) throw new Error(`rollout status: ${rs.stdout}${rs.stderr}`);
    await lab.waitFor(
      "weft's DaemonSet ready on the new tag",
      async () => (dsReady((await nodesAndDs(lab)).ds) ? true : undefined),
      60_000,
    );
    // A second of probes through the new agents, then the probers' counts.
    await sleep(1000);
    stopped = true;
    const results = await probers.stop();
    for (const r of results) if (r.error) throw new Error(`the prober in ${r.from}: ${r.error}`);
    const seen = await kernel.stop();
    const kernelDeleted = seen.flatMap((w) => w.deleted.filter((l) => /weft\./.test(l)).map((l) => `${w.node}: ${l}`));
    const vtepChanged = seen
      .filter((w) => w.vtep.before !== w.vtep.after)
      .map((w) => `${w.node}: ${w.vtep.before} -> ${w.vtep.after}`);

    // 3. Uninstall: the pods first (their DEL needs the agent), then the manifest.
    await lab.kubectl(["delete", "pod", ...pods, "--wait=true", "--timeout=120s"]);
    const t2 = performance.now();
    await lab.kubectl(["delete", "-f", "-", "--wait=true", "--timeout=120s"], manifest);
    await lab.waitFor("weft's pods gone", async () => ((await weftPods(lab)) ? undefined : true), 120_000);
    const uninstallMs = performance.now() - t2;
    for (const n of st.nodes)
      if (!existsSync(join(n.cniConfDir!, "10-weft.conflist")))
        throw new Error(`${n.name}: weft's conflist was removed by the uninstall (it must stay)`);
    const notReady = (await lab.nodes()).filter((n) => !ready(n)).map((n) => n.metadata.name);
    if (notReady.length) throw new Error(`not Ready after the uninstall: ${notReady.join(", ")}`);
    return {
      kind: first ? "first install" : "reinstall",
      nodesReadyMs,
      installMs,
      upgradeMs,
      uninstallMs,
      probes: results.reduce((a, r) => a + r.sent, 0),
      failed: results.reduce((a, r) => a + r.failed, 0),
      maxProbeMs: Math.max(...results.map((r) => r.maxMs)),
      kernelDeleted,
      vtepChanged,
      windows: results.flatMap((r, k) =>
        r.windows.map((w) => ({ ...w, from: pods[k], at: w.from - setAt, to: w.to - setAt })),
      ),
    };
  } finally {
    if (!stopped) await probers.stop().catch(() => undefined);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const sec = (ms: number): string => fmt(ms / 1000, 1);
/** "median [min-max]" in seconds. */
const spread = (xs: number[]): string =>
  xs.length === 1 ? sec(xs[0]) : `${sec(median(xs))} [${sec(Math.min(...xs))}-${sec(Math.max(...xs))}]`;

function report(rounds: Round[]): string {
  const kinds = (["first install", "reinstall"] as const)
    .map((k) => [k, rounds.filter((r) => r.kind === k)] as const)
    .filter(([, rs]) => rs.length);
  const probes = rounds.reduce((a, r) => a + r.probes, 0);
  const failed = rounds.reduce((a, r) => a + r.failed, 0);
  const deleted = rounds.flatMap((r) => r.kernelDeleted);
  const vteps = rounds.flatMap((r, i) => r.vtepChanged.map((v) => `round ${i + 1} ${v}`));
  const rows = [
    ...kinds.map(
      ([k, rs]) =>
        `| ${k}: \`kubectl apply -f\` to every node Ready and numberReady = ${NODES} | ${spread(rs.map((r) => r.installMs))} | ${rs.length} |`,
    ),
    `| rolling upgrade: \`kubectl set image\` to \`rollout status\` done | ${spread(rounds.map((r) => r.upgradeMs))} | ${rounds.length} |`,
    `| uninstall: \`kubectl delete -f\` to the agents gone | ${spread(rounds.map((r) => r.uninstallMs))} | ${rounds.length} |`,
  ];
  const perRound = rounds.map(
    (r, i) =>
      `| ${i + 1} | ${r.kind} | ${sec(r.nodesReadyMs)} | ${sec(r.installMs)} | ${sec(r.upgradeMs)} | ${r.probes} | ${r.failed} | ${r.maxProbeMs} |`,
  );
  const fails = rounds.flatMap((r, i) =>
    r.windows.map(
      (w) =>
        `round ${i + 1}: ${w.from} to ${w.target}, ${w.n} failed (${w.errors.join(", ")}) from ${sec(w.at)} s to ${sec(w.to)} s after \`set image\``,
    ),
  );
  const reinstall = FRESH
    ? "Every round runs on a new lab (`lab down`, `lab up` before it), so every round is a first install."
    : "Round 1 is a first install on a new lab (the nodes NotReady until weft's conflist lands); the later rounds reinstall on the same lab over what the uninstall leaves (weft's conflist, so the nodes stay Ready and the figure is the DaemonSet's). No `lab down`/`up` between rounds is needed: the reinstall starts from the uninstalled state each time.";
  return `## Install and rolling upgrade on real nodes (bench/install.ts)

${today()} on ${machine()}. One \`weft lab up --kubelet real --nodes ${NODES}\` lab (containerd 1.6 CRI,
kubelet 1.20.2, kube-controller-manager, kube-scheduler), ${rounds.length} rounds. Each round:
\`kubectl apply -f\` of deploy/weft.yaml (rendered with the lab's image and API server address) until
every node is Ready and the DaemonSet's numberReady = ${NODES} (polled with kubectl, about 0.5 s
resolution); a lab pod on each node; a rolling upgrade, \`kubectl set image\` of the DaemonSet to a
second tag of weft's image (\`scripts/image.sh --tag ${UPGRADE_TAG}\`, imported into every node: no
pull, the time is the rolling restart) until \`kubectl rollout status\` returns, while a prober in each
pod opens a TCP connection to the pod on every other node every ${INTERVAL_MS} ms (a probe fails on an
error or no connection within ${PROBE_TIMEOUT_MS} ms; probing starts before the \`set image\` and ends 1 s
after the rollout); the pods deleted; \`kubectl delete -f\`, the agents gone, and every node's conflist
still there and the node still Ready (checked each round). ${reinstall}

| figure | median [min-max] s | rounds |
|---|---|---|
${rows.join("\n")}

Failed probes during the rolling upgrades: **${failed}** of ${probes} (goal 0).
weft's routes, neighbours and links deleted on the nodes during the upgrades (\`ip monitor\` in each
node's namespace): ${deleted.length}${deleted.length ? ` (${deleted.slice(0, 6).join("; ")})` : ""}; VTEPs recreated (another ifindex or MAC afterwards): ${vteps.length ? vteps.join("; ") : "none"}.

| round | kind | nodes Ready s | install s | upgrade s | probes | failed | slowest probe ms |
|---|---|---|---|---|---|---|---|
${perRound.join("\n")}
${fails.length ? `\nFailed probes, as runs of failures to one target: ${fails.join("; ")}.\n` : ""}`;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync("/tmp/weft-bench-install-");
  const bail = (code: number) =>
    void (current ? labDown(current) : Promise.resolve()).finally(() => {
      rmSync(tmp, { recursive: true, force: true });
      process.exit(code);
    });
  process.once("SIGINT", () => bail(130));
  process.once("SIGTERM", () => bail(143));
  try {
    // The upgrade's tag, built as a user would, in a cache of this run's own.
    progress(B, `building localhost/weft/weft:${UPGRADE_TAG}`);
    const built = await runStatus(
      ["bash", join(repoRoot, "scripts/image.sh"), "--tag", UPGRADE_TAG, "--cache", join(tmp, "images"), "--list"],
      { timeoutMs: 600_000 },
    );
    if (built.code !== 0) throw new Error(`scripts/image.sh --tag ${UPGRADE_TAG}: ${built.stderr.slice(-2000)}`);
    const list = JSON.parse(built.stdout) as { images: Array<{ name: string; archive: string }> };
    const archive = list.images.find((i) => i.name === `localhost/weft/weft:${UPGRADE_TAG}`)?.archive;
    if (!archive) throw new Error(`scripts/image.sh --tag built no localhost/weft/weft:${UPGRADE_TAG}`);
    const manifest = renderManifest(weftImage());

    const rounds: Round[] = [];
    let lab = await labUp(archive);
    for (let i = 0; i < ROUNDS; i++) {
      if (FRESH && i > 0) {
        await labDown(lab);
        lab = await labUp(archive);
      }
      const r = await round(lab, i, manifest, tmp, FRESH || i === 0);
      rounds.push(r);
      progress(
        B,
        `round ${i + 1}/${ROUNDS} (${r.kind}): install ${sec(r.installMs)} s (nodes Ready ${sec(r.nodesReadyMs)} s), upgrade ${sec(r.upgradeMs)} s, ${r.failed}/${r.probes} probes failed, uninstall ${sec(r.uninstallMs)} s`,
      );
      // From the third round on, the section holds the rounds so far (a run cut short still reports).
      if (rounds.length >= 3) writeSection(join(repoRoot, "docs", "benchmarks.md"), "install", report(rounds));
    }
    await labDown(lab);
    const body = report(rounds);
    writeSection(join(repoRoot, "docs", "benchmarks.md"), "install", body);
    process.stdout.write(`${body}\n`);
  } finally {
    if (current) await labDown(current);
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${B}: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
