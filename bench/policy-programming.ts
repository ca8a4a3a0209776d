// Policy programming: (1) compile + render + `nft -f` of one node's whole ruleset for a large
// cluster (default 10,000 pods, 2,000 NetworkPolicies) into a network namespace made for the run,
// and the incremental element updates the policy controller makes for pod churn (one pod added,
// a pod's labels changed, one pod removed: IncrementalCompiler.update + renderModelChange +
// `nft -f`), next to the full recompile + element diff it falls back to for structural changes;
// the baseline is the floor of one `nft -f` transaction (a one-rule table) measured in the same run. (2) In a 5-node lab, the time
// from `weft apply` of a deny policy (and its `weft delete`) until every node enforces it, seen
// by probing one client->server pair per node that flips.
//   node dist-bench/bench/policy-programming.js [--pods 10000] [--policies 2000] [--local 110] [--reps 5]
//        [--nodes 5] [--flips 20] [--skip-lab]
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  compile,
  IncrementalCompiler,
  renderElementUpdate,
  renderModelChange,
  renderRuleset,
  type CompiledModel,
  type LocalPod,
} from "../src/policy/index.js";
import { nftApply } from "../src/kernel/nft.js";
import { probeOne } from "../src/lab/probe.js";
import type { Namespace, NetworkPolicy, Pod } from "../src/k8s/types.js";
import { openStore } from "../src/store/index.js";
import {
  BenchLab,
  addNetns,
  barChart,
  benchArg,
  delNetns,
  fmt,
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

const PODS = benchArg("pods", 10_000);
const POLICIES = benchArg("policies", 2_000);
const LOCAL = benchArg("local", 110);
const REPS = benchArg("reps", 5);
const NODES = benchArg("nodes", 5);
const FLIPS = benchArg("flips", 20);
const SKIP_LAB = process.argv.includes("--skip-lab");
const NS_COUNT = 50;
const APPS = 20;
const tag = Math.random().toString(36).slice(2, 6);
const B = "policy-programming";

// ---- synthetic cluster --------------------------------------------------------------------
function cluster(pods: number, policies: number): { namespaces: Namespace[]; pods: Pod[]; policies: NetworkPolicy[] } {
  const namespaces: Namespace[] = Array.from({ length: NS_COUNT }, (_, i) => ({
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: `ns${i}`, labels: { team: `t${i % 10}` } },
  }));
  const podList: Pod[] = Array.from({ length: pods }, (_, i) => podObj(i));
  const pols: NetworkPolicy[] = Array.from({ length: policies }, (_, i) => {
    const ns = `ns${i % NS_COUNT}`;
    const app = `app${i % APPS}`;
    const kind = i % 4;
    const spec: NetworkPolicy["spec"] =
      kind === 0
        ? {
            podSelector: { matchLabels: { app } },
            policyTypes: ["Ingress"],
            ingress: [
              {
                from: [{ podSelector: { matchLabels: { role: `r${i % 7}` } } }],
                ports: [{ protocol: "TCP", port: 8000 + (i % 50) }],
              },
            ],
          }
        : kind === 1
          ? {
              podSelector: { matchLabels: { app } },
              policyTypes: ["Ingress"],
              ingress: [
                {
                  from: [
                    {
                      namespaceSelector: { matchLabels: { team: `t${i % 10}` } },
                      podSelector: { matchLabels: { role: `r${i % 7}` } },
                    },
                  ],
                  ports: [{ protocol: "TCP", port: "http" }],
                },
              ],
            }
          : kind === 2
            ? {
                podSelector: { matchLabels: { app } },
                policyTypes: ["Egress"],
                egress: [
                  {
                    to: [{ ipBlock: { cidr: `10.${100 + (i % 50)}.0.0/16`, except: [`10.${100 + (i % 50)}.1.0/24`] } }],
                    ports: [{ protocol: "UDP", port: 53 }],
                  },
                ],
              }
            : {
                podSelector: {
                  matchExpressions: [{ key: "app", operator: "In", values: [app, `app${(i + 1) % APPS}`] }],
                },
                policyTypes: ["Ingress", "Egress"],
                ingress: [{ from: [{ namespaceSelector: {} }] }],
                egress: [{ to: [{ podSelector: {} }] }],
              };
    return {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: `p${i}`, namespace: ns },
      spec,
    };
  });
  return { namespaces, pods: podList, policies: pols };
}

function podIp(i: number): string {
  return `10.${64 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}`;
}

function podObj(i: number): Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: `pod${i}`, namespace: `ns${i % NS_COUNT}`, labels: { app: `app${i % APPS}`, role: `r${i % 7}` } },
    spec: {
      nodeName: i < LOCAL ? "node0" : `node${1 + (i % 90)}`,
      containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }] }],
    },
    status: { phase: "Running", podIP: podIp(i), podIPs: [{ ip: podIp(i) }] },
  } as Pod;
}

function localOf(pods: Pod[]): LocalPod[] {
  return pods
    .filter((p) => p.spec.nodeName === "node0")
    .map((p) => ({
      namespace: p.metadata.namespace!,
      name: p.metadata.name,
      ifname: `wf${p.metadata.name.replace(/[^a-z0-9]/g, "").slice(-11)}`,
      ips: [p.status!.podIP!],
    }));
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

interface Steps {
  compute: number[];
  render: number[];
  apply: number[];
  total: number[];
  bytes: number;
}
const steps = (): Steps => ({ compute: [], render: [], apply: [], total: [], bytes: 0 });

interface KernelResult {
  compile: number[];
  render: number[];
  apply: number[];
  total: number[];
  floor: number[];
  scriptBytes: number;
  /** Pod churn as the controller applies it (incremental). */
  add: Steps;
  relabel: Steps;
  remove: Steps;
  /** One pod added through the fallback: full compile + element diff of the whole model. */
  addFull: Steps;
}

const keyOf = (p: Pod): string => `${p.metadata.namespace}/${p.metadata.name}`;

async function kernelPart(): Promise<KernelResult> {
  const c = cluster(PODS, POLICIES);
  const r: KernelResult = {
    compile: [],
    render: [],
    apply: [],
    total: [],
    floor: [],
    scriptBytes: 0,
    add: steps(),
    relabel: steps(),
    remove: steps(),
    addFull: steps(),
  };
  for (let rep = 0; rep < REPS; rep++) {
    const nsName = `wb-${tag}-pp${rep}`;
    const netns = await addNetns(nsName);
    try {
      // Baseline: the fixed cost of one nft transaction.
      const t = now();
      await nftApply(
        "table inet wbfloor {\n chain c {\n  type filter hook forward priority 0; policy accept;\n  ct state established accept\n }\n}\n",
        { netns },
      );
      r.floor.push(now() - t);
      // Whole ruleset from scratch, as the agent does on start (the controller's full path:
      // compile plus what later pod updates need kept).
      let pods = [...c.pods];
      let local = localOf(pods);
      const t0 = now();
      const inc = IncrementalCompiler.from({
        namespaces: c.namespaces,
        pods,
        policies: c.policies,
        node: "node0",
        local,
      });
      const model: CompiledModel = inc.model;
      const t1 = now();
      const script = renderRuleset(model);
      const t2 = now();
      await nftApply(script, { netns });
      const t3 = now();
      r.compile.push(t1 - t0);
      r.render.push(t2 - t1);
      r.apply.push(t3 - t2);
      r.total.push(t3 - t0);
      r.scriptBytes = script.length;

      // Pod churn as PolicyController applies it: the changed pod objects and the local pods go
      // to the incremental compiler; only the elements it touched are written, in one transaction.
      const incremental = async (s: Steps, changed: Pod | string, what: string): Promise<string> => {
        const prev = inc.model;
        const ta = now();
        const res = inc.update({
          pods: new Map([typeof changed === "string" ? [changed, null] : [keyOf(changed), changed]]),
          local,
        });
        const tb = now();
        if (res === null) throw new Error(`${what} was not an element-only change`);
        const update = renderModelChange(prev, res.model, res.change);
        const tc = now();
        if (update === "") throw new Error(`${what} changed no element`);
        await nftApply(update, { netns });
        const td = now();
        s.compute.push(tb - ta);
        s.render.push(tc - tb);
        s.apply.push(td - tc);
        s.total.push(td - ta);
        s.bytes = update.length;
        return `${fmt(td - ta, 1)} ms (compute ${fmt(tb - ta, 1)}, render ${fmt(tc - tb, 1)}, nft ${fmt(td - tc, 1)})`;
      };
      // One pod added on this node (labels like others': it joins an existing isolation group).
      const extra = podObj(PODS + rep * 1000);
      extra.spec.nodeName = "node0";
      pods = [...pods, extra];
      local = localOf(pods);
      const addText = await incremental(r.add, extra, "adding a pod");
      // A pod elsewhere changes labels (role r0 -> r1): it leaves peer sets and joins others.
      const moved = pods.findIndex((p) => p.spec.nodeName !== "node0" && p.metadata.labels?.role === "r0");
      const relabelled: Pod = {
        ...pods[moved],
        metadata: { ...pods[moved].metadata, labels: { ...pods[moved].metadata.labels, role: "r1" } },
      };
      pods = pods.map((p, i) => (i === moved ? relabelled : p));
      const relabelText = await incremental(r.relabel, relabelled, "relabelling a pod");
      // The added pod goes again (its object and its interface).
      pods = pods.filter((p) => p !== extra);
      local = localOf(pods);
      const removeText = await incremental(r.remove, keyOf(extra), "removing a pod");

      // The fallback (structural changes), for comparison: the same pod added by a full compile
      // of the cluster and an element diff of the whole model.
      const before = inc.model;
      const pods2 = [...pods, extra];
      const tf0 = now();
      const model2 = compile({
        namespaces: c.namespaces,
        pods: pods2,
        policies: c.policies,
        node: "node0",
        local: localOf(pods2),
      });
      const tf1 = now();
      const full = renderElementUpdate(before, model2);
      const tf2 = now();
      if (full === null)
        throw new Error("adding one pod changed more than set elements: renderElementUpdate returned null");
      await nftApply(full, { netns });
      const tf3 = now();
      r.addFull.compute.push(tf1 - tf0);
      r.addFull.render.push(tf2 - tf1);
      r.addFull.apply.push(tf3 - tf2);
      r.addFull.total.push(tf3 - tf0);
      r.addFull.bytes = full.length;
      progress(
        B,
        `rep ${rep + 1}/${REPS}: full ${fmt(t3 - t0, 0)} ms (compile ${fmt(t1 - t0, 0)}, render ${fmt(t2 - t1, 0)}, nft ${fmt(t3 - t2, 0)}); ` +
          `one pod added ${addText}; relabelled ${relabelText}; removed ${removeText}; ` +
          `added via full compile + diff ${fmt(tf3 - tf0, 1)} ms; nft floor ${fmt(r.floor.at(-1)!, 1)} ms`,
      );
    } finally {
      await delNetns(nsName);
    }
  }
  return r;
}

// ---- lab part: apply -> enforced on every node ----------------------------------------------
interface LabResult {
  applyFromStart: number[];
  deleteFromStart: number[];
  applyCli: number[];
  deleteCli: number[];
  applyFromStore: number[];
  deleteFromStore: number[];
}

/**
 * Probes each pair in a loop until it has shown `want` 3 times in a row; returns ms from t0 to the
 * first of them: for "blocked" the start of its probe (its SYN was already dropped), for
 * "connected" the probe's end. Short timeouts both ways: a probe whose SYN was dropped gives up
 * long before TCP's 1 s retransmit, so the next probe starts right after the change.
 */
async function watchFlip(
  lab: BenchLab,
  pairs: [string, string][],
  want: boolean,
  t0: number,
  deadlineMs: number,
): Promise<number[]> {
  return Promise.all(
    pairs.map(async ([from, to]) => {
      const a = lab.pod(from),
        b = lab.pod(to);
      let firstAt = -1,
        streak = 0;
      while (now() - t0 < deadlineMs) {
        const start = now();
        const r = await probeOne(a, b, { port: 80, protocol: "TCP", timeoutMs: want ? 100 : 60, family: 4 });
        const end = now();
        // At most one probe per 10 ms per pair: enough resolution, and the probes leave CPU to the agents.
        const spent = now() - start;
        if (spent < 10) await sleep(10 - spent);
        if (r.connected === want) {
          if (streak === 0) firstAt = want ? end : start;
          if (++streak >= 3) return firstAt - t0;
        } else {
          streak = 0;
        }
      }
      return NaN;
    }),
  );
}

async function labPart(): Promise<LabResult> {
  const lab = new BenchLab("wb-pp");
  const res: LabResult = {
    applyFromStart: [],
    deleteFromStart: [],
    applyCli: [],
    deleteCli: [],
    applyFromStore: [],
    deleteFromStore: [],
  };
  progress(B, `lab ${lab.id}: up (${NODES} nodes, vxlan)`);
  try {
    await lab.up(NODES, "vxlan");
    const pods: object[] = [];
    const pairs: [string, string][] = [];
    for (let i = 1; i <= NODES; i++) {
      pods.push(
        podManifest(`srv${i}`, `n${i}`, { app: "srv" }),
        podManifest(`cli${i}`, `n${(i % NODES) + 1}`, { app: "cli" }),
      );
      pairs.push([`default/cli${i}`, `default/srv${i}`]);
    }
    await lab.apply(pods);
    const deny = JSON.stringify({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "wb-flip", namespace: "default" },
      spec: { podSelector: { matchLabels: { app: "srv" } }, policyTypes: ["Ingress"] },
    });
    if ((await watchFlip(lab, pairs, true, now(), 10_000)).some((x) => !Number.isFinite(x)))
      throw new Error("pairs not connected before the first policy");
    // When the policy lands in (or leaves) the store, as any watcher sees it: "from the store write".
    const store = openStore({ kind: "etcd", endpoints: [lab.state().etcd[0].clientUrl] });
    const ev = { added: NaN, removed: NaN };
    const w = store.objects.watch(
      "NetworkPolicy",
      (e) => {
        if (e.object.metadata.name !== "wb-flip") return;
        if (e.type === "added") ev.added = now();
        if (e.type === "removed") ev.removed = now();
      },
      { replay: false, namespace: "default" },
    );
    await w.ready;
    try {
      for (let k = 0; k < FLIPS; k++) {
        // apply: connected -> blocked on every node
        ev.added = NaN;
        ev.removed = NaN;
        let t0 = now();
        const t0Apply = t0;
        const watch = watchFlip(lab, pairs, false, t0, 15_000);
        await lab.weft(["apply", "-f", "-"], deny);
        let t1 = now();
        let ms = await watch;
        res.applyCli.push(t1 - t0);
        res.applyFromStart.push(Math.max(...ms));
        const a = Math.max(...ms);
        // delete: blocked -> connected on every node
        t0 = now();
        const watch2 = watchFlip(lab, pairs, true, t0, 15_000);
        await lab.weft(["delete", "networkpolicy", "wb-flip", "-n", "default"]);
        t1 = now();
        ms = await watch2;
        res.deleteCli.push(t1 - t0);
        res.deleteFromStart.push(Math.max(...ms));
        progress(
          B,
          `flip ${k + 1}/${FLIPS}: apply enforced on all ${NODES} nodes after ${fmt(a, 0)} ms (CLI ${fmt(res.applyCli.at(-1)!, 0)} ms), delete after ${fmt(Math.max(...ms), 0)} ms (CLI ${fmt(t1 - t0, 0)} ms)`,
        );
        for (let i = 0; i < 50 && !(Number.isFinite(ev.added) && Number.isFinite(ev.removed)); i++) await sleep(100);
        res.applyFromStore.push(a - (ev.added - t0Apply));
        res.deleteFromStore.push(Math.max(...ms) - (ev.removed - t0));
        await sleep(100);
      }
    } finally {
      await w.close().catch(() => undefined);
      await store.close().catch(() => undefined);
    }
  } finally {
    await lab.down();
  }
  return res;
}

function report(k: KernelResult, l: LabResult | null): void {
  const S = summary;
  const full = S(k.total),
    add = S(k.add.total);
  const churn = (label: string, st: Steps, goal: boolean): string[] => [
    `| ${label}: incremental compute | ${fmt(S(st.compute).p50, 2)} ms | | |`,
    `| ${label}: render touched elements | ${fmt(S(st.render).p50, 2)} ms | | |`,
    `| ${label}: nft -f (${st.bytes} bytes) | ${fmt(S(st.apply).p50, 1)} ms | ${fmt(S(st.apply).p50 / S(k.floor).p50, 1)}x the floor | |`,
    `| **${label}: total** | **${fmt(S(st.total).p50, 1)} ms** (max ${fmt(Math.max(...st.total), 1)}) | ${fmt(S(st.total).p50 / S(k.floor).p50, 1)}x the floor | ${goal ? `< 50 ms: ${verdict(Math.max(...st.total) < 50)}` : ""} |`,
  ];
  const lines = [
    `| full ruleset: compile | ${fmt(S(k.compile).p50, 0)} ms | | |`,
    `| full ruleset: render | ${fmt(S(k.render).p50, 0)} ms | | |`,
    `| full ruleset: nft -f (${(k.scriptBytes / 1e6).toFixed(1)} MB script) | ${fmt(S(k.apply).p50, 0)} ms | ${fmt(S(k.apply).p50 / S(k.floor).p50, 1)}x the floor | |`,
    `| **full ruleset: total** | **${fmt(full.p50, 0)} ms** (max ${fmt(Math.max(...k.total), 0)}) | | < 1000 ms: ${verdict(Math.max(...k.total) < 1000)} |`,
    ...churn("one pod added", k.add, true),
    ...churn("a pod's labels changed", k.relabel, true),
    ...churn("one pod removed", k.remove, true),
    `| fallback, one pod added: full compile | ${fmt(S(k.addFull.compute).p50, 1)} ms | | |`,
    `| fallback, one pod added: element diff of the whole model | ${fmt(S(k.addFull.render).p50, 1)} ms | | |`,
    `| fallback, one pod added: nft -f (${k.addFull.bytes} bytes) | ${fmt(S(k.addFull.apply).p50, 1)} ms | | |`,
    `| fallback, one pod added: total | ${fmt(S(k.addFull.total).p50, 1)} ms (max ${fmt(Math.max(...k.addFull.total), 1)}) | | |`,
    `| baseline: one nft -f transaction (one-chain table) | ${fmt(S(k.floor).p50, 1)} ms | 1x | |`,
  ];
  let labText = "";
  if (l) {
    const as = S(l.applyFromStart),
      ds = S(l.deleteFromStart),
      ac = S(l.applyCli),
      dc = S(l.deleteCli);
    const asw = S(l.applyFromStore.filter(Number.isFinite)),
      dsw = S(l.deleteFromStore.filter(Number.isFinite));
    labText = `
In a ${NODES}-node lab (vxlan), one client->server pair per node (the server on each node, its client
on the next), a deny-all-ingress policy selecting the servers is applied with \`weft apply -f -\` and
then deleted with \`weft delete\`, ${l.applyFromStart.length} times each. Each pair is probed with a new TCP
connection every 10 ms; a node counts as enforcing at the first of 3 probes in a row with the new
outcome (blocked: no answer within 60 ms, timed from that probe's start; connected within 100 ms,
timed from that probe's end). The time is the slowest node's, from the start of the
\`weft\` command. Baseline: the \`weft\` command's own run time (Node.js start, store write) in the
same flips, which every such figure includes. The bench also watches the store: "from the store
write" starts when the change reaches a watcher (as it reaches the agents).

| change | p50 | p99 | from the store write, p50 / p99 | baseline: the command's run time, p50 | goal p99 < 1 s: from command start / from store write |
|---|---|---|---|---|---|
| apply (connected -> blocked on every node) | ${fmt(as.p50, 0)} ms | ${fmt(as.p99, 0)} ms | ${fmt(asw.p50, 0)} / ${fmt(asw.p99, 0)} ms | ${fmt(ac.p50, 0)} ms | ${verdict(as.p99 < 1000)} / ${verdict(asw.p99 < 1000)} |
| delete (blocked -> connected on every node) | ${fmt(ds.p50, 0)} ms | ${fmt(ds.p99, 0)} ms | ${fmt(dsw.p50, 0)} / ${fmt(dsw.p99, 0)} ms | ${fmt(dc.p50, 0)} ms | ${verdict(ds.p99 < 1000)} / ${verdict(dsw.p99 < 1000)} |
`;
  }
  const body = `## Policy programming (bench/policy-programming.ts)

${today()} on ${machine()}. One node's ruleset for a synthetic cluster of ${PODS} pods in ${NS_COUNT} namespaces
(${LOCAL} of them on this node) and ${POLICIES} NetworkPolicies (pod, namespace+pod, ipBlock with except,
named ports, ingress and egress), built with src/policy (\`IncrementalCompiler.from\`: \`compile\` plus
the indexes kept for pod updates, then \`renderRuleset\`) and applied with \`nft -f\` (src/kernel/nft.ts)
into a fresh network namespace. Then pod churn as the policy controller applies it: one pod added on
the node (it joins an existing isolation group), a pod on another node relabelled (it moves between
peer sets), the added pod removed, each computed incrementally (\`IncrementalCompiler.update\`: only the
sets the pod leaves or joins), rendered as just those elements (\`renderModelChange\`) and committed
as one \`nft -f\` transaction. Not included: the controller's store read of the pod and its
namespace's policies in a CNI ADD (a separate round trip). For comparison, the fallback the
controller takes for structural changes (a full compile and an element diff of the whole model) on
the same pod add. Median of ${k.total.length} repetitions; goals on the maximum. Baseline: one \`nft -f\`
transaction of a one-chain table, same run.

| step | time | vs baseline | goal |
|---|---|---|---|
${lines.join("\n")}
${labText}
![Policy programming](bench-policy-programming.svg)
`;
  writeSection(join(repoRoot, "docs", "benchmarks.md"), "policy-programming", body);
  const bars = [
    { label: "full ruleset p50", value: full.p50, group: "node ruleset" },
    { label: "one pod added p50", value: add.p50, group: "node ruleset" },
    { label: "pod relabelled p50", value: S(k.relabel.total).p50, group: "node ruleset" },
    { label: "one pod removed p50", value: S(k.remove.total).p50, group: "node ruleset" },
    { label: "pod added, full recompile p50", value: S(k.addFull.total).p50, group: "fallback" },
    { label: "nft -f floor p50", value: S(k.floor).p50, group: "baseline" },
    ...(l
      ? [
          { label: "apply->enforced p99", value: S(l.applyFromStart).p99, group: `${NODES}-node lab` },
          { label: "delete->enforced p99", value: S(l.deleteFromStart).p99, group: `${NODES}-node lab` },
          { label: "weft apply run time p50", value: S(l.applyCli).p50, group: "baseline" },
        ]
      : []),
  ];
  writeFileSync(
    join(repoRoot, "docs", "bench-policy-programming.svg"),
    barChart("Policy programming time (lower is better)", "ms", bars),
  );
  process.stdout.write(body + "\n");
}

async function main(): Promise<void> {
  progress(B, `node ruleset: ${PODS} pods, ${POLICIES} policies, ${LOCAL} local pods, ${REPS} reps`);
  const k = await kernelPart();
  const l = SKIP_LAB ? null : await labPart();
  report(k, l);
}

main().catch((e: unknown) => {
  process.stderr.write(`${B}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
