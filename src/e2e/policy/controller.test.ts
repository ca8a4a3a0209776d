// The policy controller on a real kernel: a node namespace with pod namespaces behind routed wf*
// veths, objects in the local store, real UDP/TCP traffic. The tests run in order and build on
// each other's state (one node, one store).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { pino } from "pino";
import { evaluate, type CompiledModel, type Protocol } from "../../policy/index.js";
import { PolicyController, type ApplyKind } from "../../policy-agent/controller.js";
import { createPolicyMetrics, startMetricsServer } from "../../policy-agent/metrics.js";
import { DenyLogger } from "../../policy-agent/denylog.js";
import { PolicyFixture, localPod, until, type PodDef, type WiredPod } from "./fixture.js";

const root = process.getuid?.() === 0;
const skip = !root && "needs root to create network namespaces";

const CLIENT: PodDef = {
  ns: "y",
  name: "client",
  v4: "10.244.2.1",
  v6: "fd00:10:244:2::1",
  ifname: "wfyclient",
  labels: { role: "client" },
};
const OTHER: PodDef = {
  ns: "y",
  name: "other",
  v4: "10.244.2.2",
  v6: "fd00:10:244:2::2",
  ifname: "wfyother",
  labels: { role: "other" },
};
const WEB: PodDef = {
  ns: "x",
  name: "web",
  v4: "10.244.1.1",
  v6: "fd00:10:244:1::1",
  ifname: "wfxweb",
  labels: { app: "web" },
};

const denyAll = {
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name: "deny-all", namespace: "x" },
  spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] },
};
const allowClient = (port: number) => ({
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name: "allow-client", namespace: "x" },
  spec: {
    podSelector: { matchLabels: { app: "web" } },
    ingress: [
      {
        from: [{ namespaceSelector: { matchLabels: { team: "y" } }, podSelector: { matchLabels: { role: "client" } } }],
        ports: [
          { protocol: "UDP", port },
          { protocol: "TCP", port },
        ],
      },
    ],
  },
});

let f: PolicyFixture;
let ctrl: PolicyController;
let client: WiredPod, other: WiredPod, web: WiredPod;
const kinds: ApplyKind[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  if (!root) return;
  f = await PolicyFixture.create();
});
after(async () => {
  await ctrl?.stop().catch(() => undefined);
  await f?.cleanup();
});

/** Waits until the model the kernel holds gives `want` for remote -> web (ingress at web). */
async function webIngress(from: PodDef, port: number, protocol: Protocol, want: boolean): Promise<void> {
  await until(
    () => {
      const m = ctrl.model();
      if (!m?.localPods.some((p) => p.key === "x/web")) return false;
      return evaluate(m, "ingress", "x/web", { remote: from.v4, local: WEB.v4, protocol, port }).allowed === want;
    },
    10_000,
    `model: ${from.ns}/${from.name} -> x/web ${protocol}/${port} ${want ? "allowed" : "denied"}`,
  );
}

function group(m: CompiledModel, pod: string, dir: "ingress" | "egress") {
  const g = m.localPods.find((p) => p.key === pod)?.[dir].group;
  return m.groups.find((x) => x.id === g)!;
}

test(
  "podAdded resolves only once the pod's packets are already dropped (isolated before the first packet)",
  { skip },
  async () => {
    await f.namespace("x", { team: "x" });
    await f.namespace("y", { team: "y" });
    await f.apply(denyAll);
    for (const p of [CLIENT, OTHER]) await f.podObject(p);
    client = await f.wire(CLIENT);
    other = await f.wire(OTHER);
    ctrl = f.controller();
    ctrl.onApplied((k) => kinds.push(k));
    await ctrl.start();
    const clientSrv = await f.serve(client, [7000]);
    await f.serve(other, [7000]);

    // The new pod: object in the store, veth wired, server up; packets reach it while the controller
    // does not know it yet (this proves the probes work) ...
    await f.podObject(WEB);
    web = await f.wire(WEB);
    const webSrv = await f.serve(web, [7000, 7001]);
    const toWeb = await f.sender(client, WEB.v4, 7000, "udp", 5);
    await until(
      () => webSrv.lines.filter((l) => l.ev === "udp").length >= 3,
      10_000,
      "datagrams reach the pod before it is added",
    );
    const fromWeb = await f.sender(web, CLIENT.v4, 7000, "udp", 5);
    // Its own address passes anti-spoofing (a reverse-path check: no per-pod entry to wait for).
    await until(
      () => clientSrv.lines.filter((l) => l.ev === "udp" && l.from === WEB.v4).length >= 3,
      10_000,
      "datagrams from the pod reach y/client before it is added",
    );

    // ... and not a single one sent after podAdded() resolved.
    await ctrl.podAdded(localPod(WEB));
    const added = process.hrtime.bigint();
    await sleep(400);
    await toWeb.stop();
    await fromWeb.stop();
    const late = webSrv.lines.filter((l) => l.ev === "udp" && BigInt(l.t) > added);
    assert.equal(late.length, 0, `datagrams sent after podAdded() resolved reached the pod: ${late.length}`);
    const lateOut = clientSrv.lines.filter((l) => l.from === WEB.v4 && BigInt(l.t) > added);
    assert.equal(
      lateOut.length,
      0,
      `datagrams x/web sent after podAdded() resolved reached y/client: ${lateOut.length}`,
    );
    assert.equal(await f.counter("spoofed"), 0, "no legitimate packet was dropped as spoofed");
    const m = ctrl.model()!;
    const ing = group(m, "x/web", "ingress");
    const eg = group(m, "x/web", "egress");
    assert.ok(ing && eg, "x/web is isolated both ways by x/deny-all");
    assert.ok((await f.counter(ing.denyCounter)) > 0, "x/web's ingress deny counter counted the drops");
    assert.ok((await f.counter(eg.denyCounter)) > 0, "x/web's egress deny counter counted the drops");
    assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), false, "TCP y/client -> x/web denied");
    assert.equal(await f.once(web, CLIENT.v4, 7000, "tcp"), false, "TCP x/web -> y/client denied (egress)");
    assert.equal(await f.once(client, OTHER.v4, 7000, "tcp"), true, "y pods are not isolated");
  },
);

test("policy create/update/delete and pod/namespace label changes take effect", { skip }, async () => {
  await f.apply(allowClient(7000));
  await webIngress(CLIENT, 7000, "UDP", true);
  assert.equal(await f.once(client, WEB.v4, 7000, "udp"), true, "UDP allowed by x/allow-client");
  assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), true, "TCP allowed by x/allow-client");
  assert.equal(await f.once(client, WEB.v6, 7000, "tcp"), true, "TCP over IPv6 allowed by x/allow-client");
  assert.equal(await f.once(client, WEB.v4, 7001, "tcp"), false, "port 7001 is not in the rule");
  assert.equal(await f.once(other, WEB.v4, 7000, "tcp"), false, "y/other has no role=client");

  // Pod label change: an element update only.
  kinds.length = 0;
  await f.podObject(CLIENT, { role: "none" });
  await webIngress(CLIENT, 7000, "TCP", false);
  assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), false, "client relabelled: denied");
  assert.ok(
    kinds.includes("elements") && !kinds.includes("full"),
    `a label change is an element update (saw ${kinds.join(",")})`,
  );
  await f.podObject(CLIENT);
  await webIngress(CLIENT, 7000, "TCP", true);
  assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), true, "label restored: allowed");

  // Namespace label change.
  await f.namespace("y", { team: "z" });
  await webIngress(CLIENT, 7000, "TCP", false);
  assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), false, "namespace relabelled: denied");
  await f.namespace("y", { team: "y" });
  await webIngress(CLIENT, 7000, "TCP", true);
  assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), true, "namespace label restored: allowed");

  // Policy update (a rule change: the whole table, atomically).
  kinds.length = 0;
  await f.apply(allowClient(7001));
  await webIngress(CLIENT, 7001, "TCP", true);
  assert.ok(kinds.includes("full"), "a rule change replaces the table");
  assert.equal(await f.once(client, WEB.v4, 7001, "tcp"), true, "updated policy: 7001 allowed");
  assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), false, "updated policy: 7000 denied");

  // Policy deletes.
  await f.store.objects.delete({ kind: "NetworkPolicy", namespace: "x", name: "allow-client" });
  await webIngress(CLIENT, 7001, "TCP", false);
  assert.equal(await f.once(client, WEB.v4, 7001, "tcp"), false, "allow deleted: deny-all denies");
  await f.store.objects.delete({ kind: "NetworkPolicy", namespace: "x", name: "deny-all" });
  await webIngress(OTHER, 7000, "TCP", true);
  assert.equal(await f.once(other, WEB.v4, 7000, "tcp"), true, "no policy: x/web not isolated");
  assert.equal(await f.once(web, CLIENT.v4, 7000, "tcp"), true, "no policy: x/web's egress open");

  // Back to deny-all + allow-client on 7000 for what follows.
  await f.apply(denyAll);
  await f.apply(allowClient(7000));
  await webIngress(OTHER, 7000, "TCP", false);
  await webIngress(CLIENT, 7000, "TCP", true);
  assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), true);
});

test(
  "restart: a new controller adopts the table; a denied pair never connects during the restart",
  { skip },
  async () => {
    const m = ctrl.model()!;
    const allowCounter = m.policies.find((p) => p.ref.name === "allow-client")!.ingress!.rules[0].counter;
    const webSrv = await f.serve(web, [7002]); // a fresh server, so every line here counts
    const denied = await f.sender(client, WEB.v4, 7002, "both", 20);
    const allowed = await f.sender(client, WEB.v4, 7000, "udp", 20);
    await until(() => allowed.lines.length >= 3, 10_000, "the allowed pair gets echoes before the restart");
    const countBefore = await f.counter(allowCounter);

    await ctrl.stop();
    // While no controller runs, the rules stay; a change made meanwhile is picked up at start.
    await f.podObject(OTHER, { role: "client" });
    await sleep(200);
    const echoesAtStop = allowed.lines.length;
    ctrl = f.controller();
    kinds.length = 0;
    ctrl.onApplied((k) => kinds.push(k));
    await ctrl.start();
    await sleep(300);
    await denied.stop();
    await until(
      () => allowed.lines.length > echoesAtStop + 3,
      10_000,
      "the allowed pair keeps getting echoes after the restart",
    );
    await allowed.stop();

    const crossed = webSrv.lines.filter((l) => l.ev !== "ready");
    assert.equal(crossed.length, 0, `the denied pair connected ${crossed.length} time(s) during the restart`);
    const sent = denied.lines.length; // echoes the sender got: none either
    assert.equal(sent, 1, "the denied sender got no echo (its only line is 'ready')");
    assert.deepEqual(kinds, ["full"], "start() is one full, atomic replacement");
    assert.ok((await f.counter(allowCounter)) >= countBefore, "the allow counter was carried over the replacement");
    assert.equal(await f.once(other, WEB.v4, 7000, "tcp"), true, "the change made while stopped is in force");
    await webSrv.stop();
  },
);

test("metrics: allowed and denied packets per policy on a loopback /metrics endpoint", { skip }, async () => {
  const { registry } = createPolicyMetrics(ctrl);
  const srv = await startMetricsServer(registry, { port: 0 });
  try {
    assert.equal(await f.once(client, WEB.v4, 7000, "tcp"), true);
    assert.equal(await f.once(client, WEB.v4, 7001, "tcp"), false);
    assert.equal(await f.once(web, CLIENT.v4, 7000, "tcp"), false);
    const res = await fetch(`http://127.0.0.1:${srv.port}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    const value = (labels: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`weft_policy_packets_total{${labels}}`));
      return line ? Number(line.split(" ").pop()) : NaN;
    };
    assert.ok(
      value('namespace="x",policy="allow-client",direction="ingress",verdict="allow"') > 0,
      "allow-client allowed packets",
    );
    assert.ok(
      value('namespace="x",policy="deny-all",direction="ingress",verdict="deny"') > 0,
      "deny-all denied ingress packets",
    );
    assert.ok(
      value('namespace="x",policy="deny-all",direction="egress",verdict="deny"') > 0,
      "deny-all denied egress packets",
    );
    assert.match(text, /^weft_policy_spoofed_packets_total \d+/m);
    // Monotonic across scrapes.
    const first = value('namespace="x",policy="deny-all",direction="ingress",verdict="deny"');
    assert.equal(await f.once(client, WEB.v4, 7001, "tcp"), false);
    const second = await (await fetch(`http://127.0.0.1:${srv.port}/metrics`)).text();
    const again = Number(
      second
        .split("\n")
        .find((l) =>
          l.startsWith('weft_policy_packets_total{namespace="x",policy="deny-all",direction="ingress",verdict="deny"}'),
        )!
        .split(" ")
        .pop(),
    );
    assert.ok(again > first, `deny count grew (${first} -> ${again})`);
    assert.equal((await fetch(`http://127.0.0.1:${srv.port}/other`)).status, 404);
  } finally {
    await srv.close();
  }
});

test("deny log: denied connections are logged with the policies that isolate the pod", { skip }, async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const dl = new DenyLogger({ netns: f.node.path, log: pino(sink), model: () => ctrl.model() });
  await dl.start();
  try {
    await until(
      async () => {
        await f.once(client, WEB.v4, 7001, "tcp", 200);
        return lines.some((l) => l.event === "policy-deny");
      },
      15_000,
      "a deny log line",
    );
    const l = lines.find((x) => x.event === "policy-deny")!;
    assert.equal(l.direction, "ingress");
    assert.equal(l.pod, "x/web");
    assert.deepEqual([...(l.policies as string[])].sort(), ["x/allow-client", "x/deny-all"]);
    assert.equal(l.src, CLIENT.v4);
    assert.equal(l.dport, 7001);
    assert.equal(l.protocol, "TCP");
  } finally {
    await dl.stop();
  }
});

test("explain CLI agrees with real probes; policy show prints the node's ruleset", { skip }, async () => {
  const pairs: Array<[WiredPod, WiredPod, number, "tcp" | "udp", 4 | 6]> = [
    [client, web, 7000, "tcp", 4],
    [client, web, 7000, "udp", 4],
    [client, web, 7001, "tcp", 4],
    [client, web, 7000, "tcp", 6],
    [web, client, 7000, "tcp", 4],
    [client, other, 7000, "tcp", 4],
    [other, web, 7000, "tcp", 6],
  ];
  let allowedSeen = 0,
    deniedSeen = 0;
  for (const [from, to, port, proto, fam] of pairs) {
    const what = `${from.ns}/${from.name} -> ${to.ns}/${to.name} ${proto}/${port} IPv${fam}`;
    const r = await f.cli([
      "explain",
      `${from.ns}/${from.name}`,
      `${to.ns}/${to.name}`,
      "--port",
      String(port),
      "--protocol",
      proto.toUpperCase(),
      "--family",
      String(fam),
      "-o",
      "json",
    ]);
    assert.ok(r.code === 0 || r.code === 1, `${what}: explain failed: ${r.stderr}`);
    const j = JSON.parse(r.stdout) as { allowed: boolean };
    assert.equal(j.allowed, r.code === 0, `${what}: exit code matches the verdict`);
    const real = await f.once(from, fam === 4 ? to.v4 : to.v6, port, proto);
    assert.equal(j.allowed, real, `${what}: explain says ${j.allowed}, the kernel ${real}`);
    if (real) allowedSeen++;
    else deniedSeen++;
  }
  assert.ok(allowedSeen > 0 && deniedSeen > 0, "both verdicts were exercised");

  const text = await f.cli(["explain", "y/client", "x/web", "--port", "7001"]);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /DENIED/);
  assert.match(text.stdout, /isolated by x\/allow-client, x\/deny-all/);
  const ok = await f.cli(["explain", "y/client", "x/web", "--port", "7000"]);
  assert.equal(ok.code, 0);
  assert.match(ok.stdout, /by x\/allow-client ingress\[0\]/);
  const bad = await f.cli(["explain", "y/client", "x/nope", "--port", "7000"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^weft: pod x\/nope not found\n$/);
  const badPort = await f.cli(["explain", "y/client", "x/web", "--port", "70000"]);
  assert.equal(badPort.code, 2);
  assert.match(badPort.stderr, /--port 70000/);

  const show = await f.cli(["policy", "show", "--node", "node1"]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(
    show.stdout,
    /x\/web \[10\.244\.1\.1, fd00:10:244:1::1\]\n\s+ingress: isolated by x\/allow-client, x\/deny-all\n\s+egress:\s+isolated by x\/deny-all/,
  );
  const json = await f.cli(["policy", "show", "--node", "node1", "-o", "json"]);
  const model = JSON.parse(json.stdout) as CompiledModel;
  assert.deepEqual(
    model.policies.map((p) => `${p.ref.namespace}/${p.ref.name}`),
    ctrl.model()!.policies.map((p) => `${p.ref.namespace}/${p.ref.name}`),
    "the CLI's model has the agent's policies",
  );
  const nftText = await f.cli(["policy", "show", "--node", "node1", "--nft"]);
  assert.equal(
    (await f.node.status(["nft", "-c", "-f", "-"], { input: nftText.stdout })).code,
    0,
    "the printed nft script is one valid transaction",
  );
});
