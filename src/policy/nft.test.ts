// The renderer's output shape: atomic table replacement, counters per policy rule, NFLOG with a
// rate limit, element-only incremental updates, and rule counts that do not grow with pods.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile, localPodsFromCluster } from "./compile.js";
import { countRules, renderElementUpdate, renderRuleset } from "./nft.js";
import { namespaces, pods, policy, podAddr } from "./testdata.js";
import type { Namespace, NetworkPolicy, Pod } from "../k8s/types.js";

const fromYb = policy("x", "from-yb", {
  podSelector: { matchLabels: { pod: "a" } },
  ingress: [
    {
      from: [{ namespaceSelector: { matchLabels: { ns: "y" } }, podSelector: { matchLabels: { pod: "b" } } }],
      ports: [{ port: 80 }, { protocol: "UDP", port: "serve-81-udp" }],
    },
  ],
  egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.244.3.0/24"] } }] }],
});

function modelFor(ps: Pod[], pols: NetworkPolicy[], node = "node1", nss: Namespace[] = namespaces()) {
  return compile({ namespaces: nss, pods: ps, policies: pols, node, local: localPodsFromCluster(ps, node) });
}

test("the script replaces the table atomically and names counters per policy rule", () => {
  const m = modelFor(pods(), [fromYb]);
  const s = renderRuleset(m);
  const lines = s.split("\n");
  assert.deepEqual(lines.slice(0, 3), ["table inet weft", "delete table inet weft", "table inet weft {"]);
  const ci = m.counters.find((c) => c.kind === "allow" && c.direction === "ingress")!;
  assert.match(s, new RegExp(`\\tcounter ${ci.name} \\{`));
  assert.match(s, new RegExp(`counter name "${ci.name}" accept comment "x/from-yb ingress\\[0\\]"`));
  assert.match(s, /limit rate 10\/second burst 20 packets log prefix "weft deny ingress gi_[0-9a-f]+: " group 100/);
  assert.match(s, /ct state established,related accept\n\t\tct state invalid drop\n\t\tip daddr vmap @vi_4/);
  assert.doesNotMatch(s, /chain fwd\b/);
  // x/a's addresses jump to its ingress group and egress group; x/c (no policy) is in no map.
  const xa = m.localPods.find((p) => p.key === "x/a")!;
  assert.ok(s.includes(`${podAddr("x", "a")} : jump ${xa.ingress.group}`));
  assert.ok(s.includes(`${podAddr("x", "a", 6)} : jump ${xa.egress.group}`));
  assert.ok(!s.includes(`${podAddr("x", "c")} : jump`));
  // Anti-spoofing: one reverse-path rule for all pod veths, no per-pod elements.
  assert.match(
    s,
    /chain spoof_hook \{\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t\tiifname "wf\*" jump spoof_check/,
  );
  assert.match(
    s,
    /ip6 saddr \{ ::, fe80::\/10 \} return\n\t\tiifname \. ip saddr @sib_4 return\n\t\tiifname \. ip6 saddr @sib_6 return\n\t\tfib saddr \. iif oif missing counter name "spoofed" drop/,
  );
  assert.deepEqual(m.siblingSources, [], "single-interface pods: the sibling sets stay empty");
  assert.ok(!s.includes(xa.ifname), "no per-pod interface elements");
  // ipBlock except: two ranges around the hole.
  assert.ok(s.includes("elements = { 10.0.0.0-10.244.2.255, 10.244.4.0-10.255.255.255 }"));
  const opts = renderRuleset(m, { table: "t2", podIfPrefix: "veth", nflogGroup: 7, logRatePerSecond: 3 });
  assert.match(opts, /^table inet t2\ndelete table inet t2\n/);
  assert.match(opts, /iifname "veth\*" jump pod_egress/);
  assert.match(opts, /limit rate 3\/second burst 6 packets log prefix .* group 7/);
  assert.throws(() => renderRuleset(m, { table: "bad name" }), /not a plain identifier/);
});

test("pod churn and label changes are element updates; policy changes need a full render", () => {
  const before = modelFor(pods(), [fromYb]);
  assert.equal(renderElementUpdate(before, modelFor(pods(), [fromYb])), "", "nothing changed, nothing to do");

  // y/c gets label pod=b: it joins the peer set.
  const relabeled = pods();
  relabeled.find((p) => p.metadata.namespace === "y" && p.metadata.name === "c")!.metadata.labels = { pod: "b" };
  const upd = renderElementUpdate(before, modelFor(relabeled, [fromYb]));
  assert.ok(upd);
  const setName = before.podSets[0].id;
  assert.deepEqual(upd.trim().split("\n"), [
    `add element inet weft ${setName}_4 { ${podAddr("y", "c")} }`,
    `add element inet weft ${setName}_6 { ${podAddr("y", "c", 6)} }`,
  ]);

  // y/b is deleted: it leaves the peer set and the named-port set.
  const gone = pods().filter((p) => !(p.metadata.namespace === "y" && p.metadata.name === "b"));
  const del = renderElementUpdate(before, modelFor(gone, [fromYb]))!;
  assert.match(
    del,
    new RegExp(`delete element inet weft ${setName}_4 \\{ ${podAddr("y", "b").replace(/\./g, "\\.")} \\}`),
  );
  assert.match(del, /delete element inet weft n_[0-9a-f]+_4 \{ 10\.244\.2\.2 \. udp \. 81 \}/);
  assert.doesNotMatch(del, /add element/);

  // A new local pod selected by the same policy reuses the group chain: its map elements only.
  const more = [...pods()];
  const extra = structuredClone(more.find((p) => p.metadata.namespace === "x" && p.metadata.name === "a")!);
  extra.metadata.name = "a2";
  extra.status = { phase: "Running", podIPs: [{ ip: "10.244.1.9" }] };
  const added = renderElementUpdate(before, modelFor(more.concat(extra), [fromYb]))!;
  assert.match(added, /add element inet weft vi_4 \{ 10\.244\.1\.9 : jump gi_[0-9a-f]+ \}/);
  assert.doesNotMatch(added, /src_/);

  // A new local pod no policy selects (in no peer set, no named ports) changes nothing in the kernel.
  const free = structuredClone(more.find((p) => p.metadata.namespace === "x" && p.metadata.name === "c")!);
  free.metadata.name = "c2";
  for (const c of free.spec.containers) delete c.ports;
  free.status = { phase: "Running", podIPs: [{ ip: "10.244.1.10" }] };
  assert.equal(renderElementUpdate(before, modelFor(more.concat(free), [fromYb])), "");

  // A changed policy changes rules: no incremental update.
  const changed = policy("x", "from-yb", { ...fromYb.spec, ingress: [{ ports: [{ port: 81 }] }] });
  assert.equal(renderElementUpdate(before, modelFor(pods(), [changed])), null);
});

test("scale: 10,000 pods and 2,000 policies compile and render; rules do not grow with pods", () => {
  const NS = 100;
  const nss: Namespace[] = Array.from({ length: NS }, (_, i) => ({
    metadata: { name: `ns${i}`, labels: { team: `t${i % 10}` } },
  }));
  const makePods = (perNs: number): Pod[] => {
    const out: Pod[] = [];
    for (let i = 0; i < NS; i++) {
      for (let j = 0; j < perNs; j++) {
        const n = i * perNs + j;
        out.push({
          metadata: { name: `p${j}`, namespace: `ns${i}`, labels: { app: `app${j % 10}`, tier: j % 2 ? "fe" : "be" } },
          // The first 2 pods of each namespace run on this node: 200 local pods either way.
          spec: {
            nodeName: j < 2 ? "node1" : `node${2 + (n % 50)}`,
            containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }],
          },
          status: {
            phase: "Running",
            podIPs: [{ ip: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}` }, { ip: `fd00::${n.toString(16)}` }],
          },
        });
      }
    }
    return out;
  };
  const pols: NetworkPolicy[] = [];
  for (let i = 0; i < NS; i++) {
    for (let k = 0; k < 20; k++) {
      pols.push({
        metadata: { name: `pol${k}`, namespace: `ns${i}` },
        spec: {
          podSelector: { matchLabels: { app: `app${k % 10}` } },
          policyTypes: k % 3 === 0 ? ["Ingress", "Egress"] : ["Ingress"],
          ingress: [
            {
              from: [
                { podSelector: { matchLabels: { tier: "fe" } } },
                {
                  namespaceSelector: { matchLabels: { team: `t${k % 10}` } },
                  podSelector: { matchLabels: { app: `app${(k + 1) % 10}` } },
                },
              ],
              ports: [{ port: "http" }, { port: 9000 + k, endPort: 9100 + k }],
            },
            { from: [{ ipBlock: { cidr: "192.168.0.0/16", except: [`192.168.${k}.0/24`] } }] },
          ],
          egress: [{ to: [{ namespaceSelector: {} }], ports: [{ protocol: "UDP", port: 53 }] }],
        },
      });
    }
  }
  assert.equal(pols.length, 2000);
  const big = makePods(100);
  assert.equal(big.length, 10000);
  const small = makePods(10);
  const node = "node1";
  const mBig = compile({ namespaces: nss, pods: big, policies: pols, node, local: localPodsFromCluster(big, node) });
  const mSmall = compile({
    namespaces: nss,
    pods: small,
    policies: pols,
    node,
    local: localPodsFromCluster(small, node),
  });
  assert.equal(mBig.localPods.length, 200);
  const script = renderRuleset(mBig);
  assert.ok(script.length > 0);
  const rulesBig = countRules(mBig);
  const rulesSmall = countRules(mSmall);
  assert.equal(rulesBig, rulesSmall, "10x the pods, the same rules");
  // Bounded by the policies that select local pods, not by pods: here 2 x 10 policy chains per namespace with
  // at most (2 peers x 2 ports x 2 families + 2 x 2 + 1 x 1) rules each, plus groups and the fixed chains.
  assert.ok(rulesBig < 2000 * 14 + 2 * mBig.groups.length * 10 + 20, `${rulesBig} rules`);
  const elements = (m: typeof mBig) => m.podSets.reduce((n, s) => n + s.v4.length + s.v6.length, 0);
  assert.ok(elements(mBig) > 5 * elements(mSmall), "pods live in set elements");
});
