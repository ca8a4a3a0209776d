// The PolicyDatapath case suite: what every datapath must do, run from each implementation's
// folder (nft/nft.test.ts; an eBPF one runs it the same way), as src/kernel/pod/cases.ts is for the
// pod kernels. A test "node" namespace with pod namespaces behind routed wf* veths (as the agent
// wires them); models come from the real compiler; results are read the way a user would: does a
// TCP connection go through, do the counters count, is anything left after remove(). What only one
// implementation does (nft's table text, its sets) stays in that implementation's tests.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createNetns, type TestNetns } from "../../testlib/netns.js";
import { wireRoutedPod } from "../../testlib/routed-pod.js";
import { compile, IncrementalCompiler, podKey, type CompiledModel, type LocalPod } from "../../policy/index.js";
import type { Namespace, NetworkPolicy, Pod } from "../../k8s/types.js";
import type { PolicyDatapath } from "./types.js";

/** Makes the implementation under test for the node namespace (its `netns` is the path). */
export type MakeDatapath = (node: TestNetns) => PolicyDatapath;

interface CasePod {
  ns: string;
  name: string;
  v4: string;
  v6: string;
  ifname: string;
  netns?: TestNetns;
}

const XA: CasePod = { ns: "x", name: "a", v4: "10.244.31.1", v6: "fd00:10:244:31::1", ifname: "wfdxa" };
const XB: CasePod = { ns: "x", name: "b", v4: "10.244.31.2", v6: "fd00:10:244:31::2", ifname: "wfdxb" };
const YA: CasePod = { ns: "y", name: "a", v4: "10.244.32.1", v6: "fd00:10:244:32::1", ifname: "wfdya" };
const PODS = [XA, XB, YA];

const namespaces: Namespace[] = ["x", "y"].map((n) => ({ metadata: { name: n, labels: { ns: n } } }));
/** x/a admits port 80 from pods labelled role=client in any namespace, and nothing else. */
const ISOLATE_XA: NetworkPolicy = {
  metadata: { name: "xa-ingress", namespace: "x" },
  spec: {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Ingress"],
    ingress: [
      {
        from: [{ namespaceSelector: {}, podSelector: { matchLabels: { role: "client" } } }],
        ports: [{ port: 80 }],
      },
    ],
  },
};
const podObject = (p: CasePod, client: boolean): Pod => ({
  metadata: { name: p.name, namespace: p.ns, labels: { pod: p.name, ...(client ? { role: "client" } : {}) } },
  spec: { nodeName: "node1", containers: [{ name: "srv" }] },
  status: { phase: "Running", podIPs: [{ ip: p.v4 }, { ip: p.v6 }] },
});
const local: LocalPod[] = PODS.map((p) => ({ namespace: p.ns, name: p.name, ifname: p.ifname, ips: [p.v4, p.v6] }));
/** The compile input with `clients` labelled role=client and the given policies. */
const input = (clients: CasePod[], policies: NetworkPolicy[] = [ISOLATE_XA]) => ({
  namespaces,
  pods: PODS.map((p) => podObject(p, clients.includes(p))),
  policies,
  node: "node1",
  local,
});
const model = (clients: CasePod[], policies?: NetworkPolicy[]): CompiledModel => compile(input(clients, policies));

export function policyDatapathCases(impl: string, make: MakeDatapath): void {
  const root = process.getuid?.() === 0;
  const skip = !root && "needs root to create network namespaces";
  const servers: ChildProcess[] = [];
  let node: TestNetns | undefined;
  const made: TestNetns[] = [];

  before(async () => {
    if (!root) return;
    node = await createNetns("pd");
    made.push(node);
    await node.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await node.exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    for (const p of PODS) {
      p.netns = await wireRoutedPod(node, p.ifname, p.v4, p.v6);
      made.push(p.netns);
    }
    // An echo server on x/a and y/a, IPv4 and IPv6 (nsenter execs socat: the PID is socat's).
    for (const p of [XA, YA])
      for (const port of [80, 81]) {
        servers.push(
          spawn(
            "nsenter",
            [`--net=${p.netns!.path}`, "--", "socat", `TCP6-LISTEN:${port},fork,reuseaddr,ipv6only=0`, "PIPE"],
            { stdio: "ignore" },
          ),
        );
        await listening(p, port);
      }
  });
  after(async () => {
    const running = servers.filter((s) => s.pid !== undefined && s.exitCode === null && s.signalCode === null);
    const closed = running.map((s) => new Promise((r) => s.once("close", r)));
    for (const s of running) process.kill(s.pid!, "SIGTERM");
    await Promise.all(closed);
    for (const ns of made.reverse()) await ns.remove();
  });

  /** A fresh datapath object on the node (as a restarted agent would make), after removing what the last test left. */
  const fresh = async (): Promise<PolicyDatapath> => {
    const dp = make(node!);
    await dp.remove();
    return dp;
  };

  test(`${impl}: nothing is loaded at first: no rules, no counters, every pod connects`, { skip }, async () => {
    const dp = await fresh();
    assert.equal(await dp.show(), null);
    assert.equal(await dp.counters(), null);
    assert.ok(await connects(YA, XA, 80), "wiring: y/a -> x/a:80 with no datapath state");
    assert.ok(await connects(XB, XA, 80, 6), "wiring: x/b -> x/a:80 over IPv6");
  });

  test(
    `${impl}: load() puts a compiled model in force: the isolated pod admits only what the policy allows`,
    { skip },
    async () => {
      const dp = await fresh();
      assert.deepEqual(await dp.load(model([XB])), { adopted: false }, "nothing was there to adopt");
      assert.ok(await connects(XB, XA, 80), "x/b (role=client) -> x/a:80 allowed");
      assert.ok(await connects(XB, XA, 80, 6), "x/b -> x/a:80 over IPv6 allowed");
      assert.equal(await connects(XB, XA, 81), false, "x/b -> x/a:81 denied (the policy allows port 80 only)");
      assert.equal(await connects(YA, XA, 80), false, "y/a (no role) -> x/a:80 denied");
      assert.equal(await connects(YA, XA, 80, 6), false, "y/a -> x/a:80 over IPv6 denied");
      assert.ok(await connects(XA, YA, 80), "x/a -> y/a:80 allowed (y/a is not isolated)");
      assert.notEqual(await dp.show(), null, "the loaded state can be shown");
    },
  );

  test(
    `${impl}: a restarted agent adopts what is loaded: the rules stay in force until its own load() replaces them`,
    { skip },
    async () => {
      const first = await fresh();
      const m = model([XB]);
      await first.load(m);
      const second = make(node!);
      assert.notEqual(await second.show(), null, "a new datapath object sees what the previous one loaded");
      assert.equal(await connects(YA, XA, 80), false, "still enforced before the new load");
      assert.deepEqual(await second.load(model([XB, YA])), { adopted: true });
      assert.ok(await connects(YA, XA, 80), "the new model is in force: y/a -> x/a:80 allowed");
      assert.equal(await connects(YA, XA, 81), false, "and still only port 80");
    },
  );

  test(
    `${impl}: update() changes who may connect by members only; it says when it cannot (a policy changed)`,
    { skip },
    async () => {
      const dp = await fresh();
      const m1 = model([XB]);
      await dp.load(m1);
      assert.equal(await dp.update(m1, m1), "none", "the same model: nothing to do");
      const m2 = model([XB, YA]);
      assert.equal(await dp.update(m1, m2), "elements", "a label change is a members-only change");
      assert.ok(await connects(YA, XA, 80), "y/a -> x/a:80 allowed after the update");
      assert.ok(await connects(YA, XA, 80, 6), "y/a -> x/a:80 over IPv6 allowed after the update");
      assert.equal(await dp.update(m2, m1), "elements");
      assert.equal(await connects(YA, XA, 80), false, "y/a -> x/a:80 denied again");

      // The incremental compiler's change (pod churn): only what it touched is compared.
      const inc = IncrementalCompiler.from(input([XB]));
      const r = inc.update({ pods: new Map([[podKey("y", "a"), podObject(YA, true)]]), local });
      assert.ok(r, "relabelling a pod is an incremental change");
      assert.equal(await dp.update(m1, r.model, r.change), "elements");
      assert.ok(await connects(YA, XA, 80), "y/a -> x/a:80 allowed after the incremental update");

      const open = model([XB], []);
      assert.equal(await dp.update(r.model, open), null, "a policy removed is not a members-only change");
      assert.equal(await connects(YA, XA, 81), false, "a refused update changed nothing");
      await dp.load(open);
      assert.ok(await connects(YA, XA, 81), "load() of a model without policies: everything connects");
    },
  );

  test(
    `${impl}: counters() reads the model's counters; they count allowed and denied traffic and survive updates and reloads`,
    { skip },
    async () => {
      const dp = await fresh();
      const m1 = model([XB]);
      await dp.load(m1);
      const allow = m1.policies.find((p) => p.ref.name === "xa-ingress")!.ingress!.rules[0].counter;
      const deny = m1.groups.find((g) => g.pods.includes("x/a") && g.direction === "ingress")!.denyCounter;
      const c0 = await dp.counters();
      assert.ok(c0, "a loaded model has counters");
      for (const c of m1.counters) assert.ok(c0.has(c.name), `counter ${c.name} of the model is readable`);
      assert.equal(c0.get(allow)?.packets, 0);

      assert.ok(await connects(XB, XA, 80));
      assert.equal(await connects(YA, XA, 80), false);
      const c1 = (await dp.counters())!;
      assert.ok(c1.get(allow)!.packets > 0, `the allow counter counted x/b's connection (${c1.get(allow)!.packets})`);
      assert.ok(c1.get(allow)!.bytes > 0);
      assert.ok(c1.get(deny)!.packets > 0, "x/a's deny counter counted y/a's attempt");

      await dp.update(m1, model([XB, YA]));
      const c2 = (await dp.counters())!;
      assert.ok(c2.get(allow)!.packets >= c1.get(allow)!.packets, "counters survive a members-only update");
      await dp.load(m1);
      const c3 = (await dp.counters())!;
      assert.ok(c3.get(allow)!.packets >= c2.get(allow)!.packets, "counters are carried over a reload");
      assert.ok(c3.get(deny)!.packets >= c1.get(deny)!.packets);
    },
  );

  test(
    `${impl}: remove() leaves nothing behind; every pod connects again; removing twice is harmless`,
    { skip },
    async () => {
      const dp = await fresh();
      await dp.load(model([XB]));
      assert.equal(await connects(YA, XA, 80), false);
      assert.equal(await dp.remove(), true, "there was something to remove");
      assert.equal(await dp.show(), null, "nothing left to show");
      assert.equal(await dp.counters(), null, "no counters left");
      assert.ok(await connects(YA, XA, 80), "no rules, no policy: y/a -> x/a:80 connects");
      assert.equal(await dp.remove(), false, "a second remove finds nothing");
    },
  );
}

async function listening(p: CasePod, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await p.netns!.status(["ss", "-Hltn", `sport = :${port}`]);
    if (r.stdout.trim()) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`server on ${p.ns}/${p.name}:${port} did not start`);
}

/** A TCP echo round trip from one pod to another (the probe a user would run). */
async function connects(from: CasePod, to: CasePod, port: number, family: 4 | 6 = 4): Promise<boolean> {
  const target = family === 4 ? `TCP4:${to.v4}:${port}` : `TCP6:[${to.v6}]:${port}`;
  const r = await from.netns!.status(["socat", "-T", "2", "STDIO", `${target},connect-timeout=1.5`], {
    input: "hello\n",
  });
  return r.code === 0 && r.stdout === "hello\n";
}
