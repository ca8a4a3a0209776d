// The incremental compile against the full one: seeded random sequences of pod adds, removes,
// label and status changes, local interface adds/removes and sibling changes over a synthetic
// cluster; after every step the incrementally kept model must equal compile() of the same inputs,
// the model the kernel held must be untouched, and the element script must make exactly the
// changes a full element diff (renderElementUpdate) makes.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Pod } from "../k8s/types.js";
import { compile, podKey, type CompileInput } from "./compile.js";
import { IncrementalCompiler } from "./incremental.js";
import type { CompiledModel, LocalPod } from "./model.js";
import { renderElementUpdate, renderModelChange } from "./nft.js";
import { rng, synLabels, synPod, syntheticCluster } from "./testdata.js";

/** An element script as a sorted list of "op set element" (one per element). */
function ops(script: string): string[] {
  const out: string[] = [];
  for (const line of script.split("\n").filter(Boolean)) {
    const m = /^(delete|add) element inet weft (\S+) \{ (.*) \}$/.exec(line);
    assert.ok(m, `unexpected line in an element script: ${line}`);
    for (const el of m[3].split(", ")) out.push(`${m[1]} ${m[2]} ${el}`);
  }
  return out.sort();
}

function localOf(pod: Pod, ifname: string): LocalPod {
  const ips = (pod.status?.podIPs ?? []).map((p) => p.ip);
  return { namespace: pod.metadata.namespace!, name: pod.metadata.name, ifname, ips };
}

function run(
  seed: number,
  steps: number,
): { incremental: number; full: number; changedElements: number; largest: number } {
  const c = syntheticCluster(seed, 800, 160);
  const r = rng(seed * 7 + 1);
  const pods = new Map<string, Pod>();
  for (const p of c.pods) pods.set(podKey(p.metadata.namespace!, p.metadata.name), p);
  const local = new Map<string, LocalPod>();
  let ifn = 0;
  for (const p of c.pods)
    if (p.spec.nodeName === c.node && !p.spec.hostNetwork) local.set(`wfs${ifn}`, localOf(p, `wfs${ifn++}`));
  let sameNetns: string[][] = [];
  let next = c.pods.length;
  const input = (): CompileInput => ({
    namespaces: c.namespaces,
    policies: c.policies,
    pods: [...pods.values()],
    node: c.node,
    local: [...local.values()],
    sameNetns,
  });

  let inc = IncrementalCompiler.from(input());
  assert.deepEqual(inc.model, compile(input()));
  const stats = { incremental: 0, full: 0, changedElements: 0, largest: 0 };
  const keys = () => [...pods.keys()];
  const randomKey = () => keys()[Math.floor(r() * pods.size)];
  const clone = (p: Pod): Pod => structuredClone(p);

  let second: string[] = [];
  for (let step = 0; step < steps; step++) {
    const changed = new Map<string, Pod | null>();
    // A second interface lives one step (its DEL follows), or every later step would be structural.
    const did: string[] = [];
    if (second.length) {
      for (const i of second) local.delete(i);
      second = [];
      did.push("second interface gone");
    }
    const set = (p: Pod) => {
      const k = podKey(p.metadata.namespace!, p.metadata.name);
      pods.set(k, p);
      changed.set(k, p);
    };
    // Mostly one change, sometimes a few, now and then a burst (many candidates per set).
    const roll = r();
    const batch = roll < 0.04 ? 12 + Math.floor(r() * 12) : roll < 0.24 ? 2 + Math.floor(r() * 3) : 1;
    for (let b = 0; b < batch; b++) {
      const op = r();
      if (op < 0.2) {
        // A pod on another node.
        set(synPod(r, next++, `n${1 + Math.floor(r() * 9)}`));
        did.push("add remote");
      } else if (op < 0.35) {
        // A pod on this node: object and interface (its addresses from CNI, maybe before status).
        const p = synPod(r, next++, c.node);
        if (p.spec.hostNetwork) delete p.spec.hostNetwork;
        // Often a replica of a local pod: same namespace and labels, so the same isolation group.
        const twinOf = [...local.values()]
          .map((l) => pods.get(podKey(l.namespace, l.name)))
          .filter((x): x is Pod => x !== undefined);
        if (twinOf.length && r() < 0.6) {
          const t = twinOf[Math.floor(r() * twinOf.length)];
          p.metadata = { ...p.metadata, namespace: t.metadata.namespace, labels: { ...t.metadata.labels } };
        }
        const lp = localOf(p, `wfs${ifn++}`);
        if (r() < 0.2) p.status = { phase: "Pending" };
        set(p);
        local.set(lp.ifname, lp);
        did.push("add local");
      } else if (op < 0.5) {
        const k = randomKey();
        pods.delete(k);
        changed.set(k, null);
        for (const [i, l] of local) if (podKey(l.namespace, l.name) === k) local.delete(i);
        did.push(`remove ${k}`);
      } else if (op < 0.7) {
        const p = clone(pods.get(randomKey())!);
        p.metadata.labels = r() < 0.5 ? synLabels(r) : { ...p.metadata.labels, role: `r${Math.floor(r() * 4)}` };
        set(p);
        did.push(`relabel ${p.metadata.namespace}/${p.metadata.name}`);
      } else if (op < 0.75) {
        const p = clone(pods.get(randomKey())!);
        p.status = { ...p.status, phase: "Succeeded" };
        set(p);
        did.push("finish");
      } else if (op < 0.8) {
        // A pending pod gets its address; or an address is reused by a new pod.
        const old = pods.get(randomKey())!;
        const p = synPod(r, next++, r() < 0.3 ? c.node : "n3");
        p.status = {
          phase: "Running",
          podIP: old.status?.podIP ?? "10.250.255.1",
          podIPs: [{ ip: old.status?.podIP ?? "10.250.255.1" }],
        };
        set(p);
        if (p.spec.nodeName === c.node && !p.spec.hostNetwork) local.set(`wfs${ifn}`, localOf(p, `wfs${ifn++}`));
        did.push("reuse address");
      } else if (op < 0.85) {
        // CNI DEL of a local interface (the object stays, e.g. until the kubelet removes it).
        const l = [...local.keys()];
        if (l.length) local.delete(l[Math.floor(r() * l.length)]);
        did.push("cni del");
      } else if (op < 0.9) {
        // A container without a pod object (no K8S_POD_* args).
        local.set(`wfs${ifn}`, {
          namespace: "_cni",
          name: `c${ifn}`,
          ifname: `wfs${ifn++}`,
          ips: [`10.251.0.${ifn % 250}`],
        });
        did.push("cni container");
      } else if (op < 0.93) {
        // A second interface of a local pod (a structural case: full compile).
        const l = [...local.values()].filter((x) => x.namespace !== "_cni");
        if (l.length) {
          const o = l[Math.floor(r() * l.length)];
          second.push(`wfs${ifn}`);
          local.set(`wfs${ifn}`, { ...o, ifname: `wfs${ifn++}`, ips: [`10.252.0.${ifn % 250}`] });
        }
        did.push("second interface");
      } else if (op < 0.96) {
        const l = [...local.keys()];
        sameNetns =
          l.length >= 2 && r() < 0.7 ? [[l[0], l[Math.floor(r() * l.length)]].sort()].filter((g) => g[0] !== g[1]) : [];
        did.push("netns groups");
      } else {
        // A local pod changes labels (may move to another isolation group, or need a new one).
        const l = [...local.values()].filter((x) => pods.has(podKey(x.namespace, x.name)));
        if (l.length) {
          const x = l[Math.floor(r() * l.length)];
          const p = clone(pods.get(podKey(x.namespace, x.name))!);
          p.metadata.labels = synLabels(r);
          set(p);
        }
        did.push("relabel local");
      }
    }

    const prev = inc.model;
    const prevCopy = structuredClone(prev);
    const want = compile(input());
    const res = inc.update({ pods: changed, local: [...local.values()], sameNetns });
    const what = `seed ${seed} step ${step} (${did.join(", ")})`;
    if (res === null) {
      stats.full++;
      inc = IncrementalCompiler.from(input());
      assert.deepEqual(inc.model, want, `${what}: from() equals compile()`);
      continue;
    }
    stats.incremental++;
    assert.deepEqual(res.model, want, `${what}: the incremental model equals a full compile`);
    assert.deepEqual(prev, prevCopy, `${what}: the previous model was not modified`);
    const full = renderElementUpdate(prev, res.model);
    assert.notEqual(full, null, `${what}: an incremental step changed only elements`);
    const got = ops(renderModelChange(prev, res.model, res.change));
    assert.deepEqual(got, ops(full!), `${what}: the element script makes the same changes as a full diff`);
    stats.changedElements += got.length;
    stats.largest = Math.max(stats.largest, got.length);
  }
  return stats;
}

test("incremental pod updates equal a full compile after every step (seeded random sequences)", (t) => {
  for (const seed of [1, 2, 3]) {
    const s = run(seed, 250);
    t.diagnostic(
      `seed ${seed}: ${s.incremental} incremental steps, ${s.full} full compiles, ${s.changedElements} element changes, largest incremental step ${s.largest} elements`,
    );
    // Both paths must have been exercised, the incremental one mostly, with real element changes.
    assert.ok(s.incremental > 150, `seed ${seed}: ${s.incremental} incremental steps of 250`);
    assert.ok(s.full > 0, `seed ${seed}: no structural step fell back to a full compile`);
    assert.ok(s.changedElements > 100, `seed ${seed}: only ${s.changedElements} element changes`);
  }
});

test("a local pod joining an existing group is incremental; one needing a new group is not", () => {
  const c = syntheticCluster(5, 400, 80);
  const locals = c.pods.filter((p) => p.spec.nodeName === c.node && !p.spec.hostNetwork && p.status?.podIPs);
  const local = locals.map((p, i) => localOf(p, `wfs${i}`));
  const base: CompileInput = { namespaces: c.namespaces, policies: c.policies, pods: c.pods, node: c.node, local };
  const inc = IncrementalCompiler.from(base);
  const model: CompiledModel = inc.model;
  const grouped = model.localPods.find((p) => p.ingress.group !== null);
  assert.ok(grouped, "the synthetic node has an isolated pod");
  // A twin of an isolated pod: same namespace and labels, so the same policies and group.
  const src = c.pods.find((p) => podKey(p.metadata.namespace!, p.metadata.name) === grouped.key)!;
  const twin: Pod = {
    ...structuredClone(src),
    metadata: { ...src.metadata, name: "twin" },
    status: { phase: "Running", podIP: "10.253.0.1", podIPs: [{ ip: "10.253.0.1" }] },
  };
  const lp = localOf(twin, "wftwin");
  const res = inc.update({ pods: new Map([[podKey(twin.metadata.namespace!, "twin"), twin]]), local: [...local, lp] });
  assert.ok(res, "joining an existing group needs no full compile");
  assert.deepEqual(res.model, compile({ ...base, pods: [...c.pods, twin], local: [...local, lp] }));
  const script = renderModelChange(model, res.model, res.change);
  assert.match(
    script,
    new RegExp(`add element inet weft vi_4 \\{ 10\\.253\\.0\\.1 : jump ${grouped.ingress.group} \\}`),
    "the twin's verdict map entry",
  );
  // A pod selected by a policy that selects no local pod yet: new chains, so no element update.
  const inc2 = IncrementalCompiler.from(base);
  const unused = c.policies.find(
    (np) =>
      !model.policies.some((cp) => cp.ref.name === np.metadata.name && cp.ref.namespace === np.metadata.namespace) &&
      Object.keys(np.spec.podSelector?.matchLabels ?? {}).length > 0,
  );
  assert.ok(unused, "some policy selects no local pod");
  const sel: Pod = {
    ...structuredClone(src),
    metadata: { name: "sel", namespace: unused.metadata.namespace, labels: { ...unused.spec.podSelector.matchLabels } },
    status: { phase: "Running", podIP: "10.253.0.2", podIPs: [{ ip: "10.253.0.2" }] },
  };
  assert.equal(
    inc2.update({
      pods: new Map([[podKey(unused.metadata.namespace!, "sel"), sel]]),
      local: [...local, localOf(sel, "wfsel")],
    }),
    null,
  );
  assert.throws(() => inc2.update({ pods: new Map(), local }), /from\(\)/, "a spent compiler refuses further updates");
});
