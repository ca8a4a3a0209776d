// weft on real nodes, checked the way a cluster admin would, on one `weft lab up --kubelet real`
// lab of 2 nodes (containerd CRI + kubelet 1.20, kube-controller-manager, kube-scheduler) with weft
// installed by `kubectl apply -f deploy/weft.yaml`:
// - a NetworkPolicy applied with kubectl isolates, across nodes (the matrix shows exactly the allowed pairs);
// - egress masquerade: a pod reaching a node address outside the cluster CIDRs is seen with its node's
//   address, while pod-to-pod keeps the pod's own address;
// - a rolling upgrade of the DaemonSet to another image tag while a TCP stream between pods on two nodes
//   flows and new connections are opened both ways every 50 ms: the stream survives gap-free, no new
//   connection fails, no route, neighbour or VTEP of weft's changes in either node, and pod addresses,
//   weft's leases and the podCIDRs are unchanged;
// - agent down on a node: a new pod's sandbox gets CNI error 11 and runs once the agent is back; a pod
//   deleted meanwhile leaves no veth and no address behind;
// - the kubelet's own Lease and Node: watched for the whole run, never written by weft beyond its
//   annotations, label and the NetworkUnavailable condition; each kubelet runs as system:node:NAME
//   (its own token), which NodeRestriction keeps off other nodes' objects;
// - uninstall: `kubectl delete -f`, then `weft uninstall --real-node --yes` in each node leaves nothing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runStatus } from "../../kernel/exec.js";
import { netnsPathOf } from "../../lab/names.js";
import { binaries, run } from "../../lab/realnode/host.js";
import { ctr, inNode } from "../../lab/realnode/node.js";
import { nodeKubeconfig } from "../../lab/agents.js";
import { kubectlBinary } from "../../testlib/kubectl.js";
import { ROOT, WEFT_BIN } from "../../testlib/lab.js";
import { inCidr } from "../cluster/fixture.js";
import {
  hostSnapshot,
  RealLab,
  requireComponents,
  skipReason,
  startProbers,
  watchNodeKernels,
  type HostSnapshot,
  type PodJson,
} from "./fixture.js";
import { describeWindows } from "../../testlib/prober.js";
import { podManifest, renderManifest, weftImage } from "./manifest.js";

const skip = skipReason();
const UPGRADE_TAG = "localhost/weft/weft:e2e-upgrade";

// Every test pod: [namespace, name, node, labels].
const PODS: Array<[string, string, string]> = [
  ["pol", "a", "n1"],
  ["pol", "b", "n2"],
  ["pol", "c", "n2"],
  ["default", "m1", "n1"],
  ["default", "m2", "n2"],
  ["default", "gone", "n2"],
];

// A one-connection TCP server: checks the client's counter lines are 0,1,2,... and, on "end", writes
// {received, bad, maxGapMs, remote} to OUT. Writes READY once listening, OUT.flowing after 50 lines. Gives up after 10 minutes.
const SERVER = `
const net = require("net"), fs = require("fs");
const [port, ready, out] = process.argv.slice(1);
setTimeout(() => { fs.writeFileSync(out, JSON.stringify({ error: "no end within 10 min" })); process.exit(2); }, 600000).unref();
const srv = net.createServer((s) => {
  let buf = "", next = 0, bad = 0, last = Date.now(), maxGapMs = 0;
  const fail = (error) => { fs.writeFileSync(out, JSON.stringify({ error, received: next })); process.exit(1); };
  s.on("data", (d) => {
    const now = Date.now(); maxGapMs = Math.max(maxGapMs, now - last); last = now; buf += d;
    for (let i; (i = buf.indexOf("\\n")) >= 0; ) {
      const l = buf.slice(0, i); buf = buf.slice(i + 1);
      if (l === "end") { fs.writeFileSync(out, JSON.stringify({ received: next, bad, maxGapMs, remote: s.remoteAddress })); process.exit(0); }
      if (Number(l) !== next) bad++;
      next = Number(l) + 1;
      if (next === 50) fs.writeFileSync(out + ".flowing", "1");
    }
  });
  s.on("error", (e) => fail(e.message));
  s.on("close", () => fail("closed before end"));
});
srv.listen(Number(port), "0.0.0.0", () => fs.writeFileSync(ready, "1"));
`;

// Sends a counter line every INTERVAL ms until STOP exists, then "end". Exits 0 when the server closed.
const CLIENT = `
const net = require("net"), fs = require("fs");
const [host, port, stop, interval] = process.argv.slice(1);
setTimeout(() => process.exit(3), 600000).unref();
let i = 0;
const s = net.connect(Number(port), host, () => {
  const t = setInterval(() => {
    if (fs.existsSync(stop)) { clearInterval(t); s.end("end\\n"); return; }
    s.write(i + "\\n"); i++;
  }, Number(interval));
});
s.on("error", (e) => { console.error(e.message); process.exit(1); });
s.on("close", () => { console.log(JSON.stringify({ sent: i })); });
`;

interface StreamResult {
  received?: number;
  bad?: number;
  maxGapMs?: number;
  remote?: string;
  error?: string;
}

interface Lease {
  metadata: { name: string; uid: string; annotations?: Record<string, string> };
  spec?: { holderIdentity?: string };
}

interface ManagedField {
  manager: string;
  operation: string;
  fieldsV1?: Record<string, unknown>;
}

/** Every leaf path ("f:metadata/f:annotations/f:x") of a managedFields fieldsV1 tree. */
function fieldPaths(tree: Record<string, unknown>, prefix = ""): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(tree)) {
    const p = prefix ? `${prefix}/${k}` : k;
    const sub = v as Record<string, unknown>;
    if (k === "." || !sub || Object.keys(sub).length === 0) out.push(p);
    else out.push(...fieldPaths(sub, p));
  }
  return out;
}

/** What weft may write on a Node: its annotations and label, and the NetworkUnavailable condition. */
const WEFT_NODE_FIELDS = [
  /^f:metadata\/f:annotations\/(\.|f:weft\.dev\/.*)$/,
  /^f:metadata\/f:labels\/(\.|f:weft\.dev\/.*)$/,
  /^f:status\/f:conditions\/(\.|k:\{"type":"NetworkUnavailable"\}(\/.*)?)$/,
];

/** Writers a Node may have besides weft: the kubelet registers and updates it, KCM sets podCIDRs. */
const NODE_WRITERS = ["kubelet", "kube-controller-manager"];

describe(
  "weft on 2 real nodes: policy, masquerade, upgrade, agent down, good citizen, uninstall",
  { skip, timeout: 1_500_000 },
  () => {
    const lab = new RealLab();
    let before0: HostSnapshot;
    let downDone = false;
    let tmp = "";
    let manifest = "";
    const watchers: ChildProcess[] = [];
    const watched: Record<string, string> = { lease: "", node: "" };

    const kc = (args: string[], input?: string) => lab.kubectl(args, input);
    const nodeOf = (name: string) => lab.state().nodes.find((n) => n.name === name)!;
    const realOf = (name: string) => lab.state().real!.nodes.find((n) => n.name === name)!;
    const bindOf = (node: string, target: string) => realOf(node).binds.find((b) => b.target === target)!.source;

    /** Runs argv in node's network namespace (as `weft lab exec NODE`). */
    const inNodeNet = (node: string, argv: string[]) =>
      runStatus(["nsenter", `--net=${netnsPathOf(nodeOf(node).netns)}`, "--", ...argv], { timeoutMs: 60_000 });

    const wfLinks = async (node: string): Promise<string[]> => {
      const r = await inNodeNet(node, ["ip", "-o", "link", "show"]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout
        .split("\n")
        .map((l) => l.split(": ")[1]?.split("@")[0])
        .filter((n): n is string => !!n && /^wf[0-9a-f]{11}$/.test(n))
        .sort();
    };

    const testPods = async (): Promise<PodJson[]> =>
      (await lab.pods()).filter((p) => PODS.some(([ns, n]) => ns === p.metadata.namespace && n === p.metadata.name));

    const weftPods = async (): Promise<PodJson[]> =>
      (await lab.pods()).filter(
        (p) => p.metadata.namespace === "kube-system" && p.metadata.name.startsWith("weft-") && p.status.phase,
      );

    const dsReady = async (want: number): Promise<boolean | undefined> => {
      const ds = JSON.parse(await kc(["-n", "kube-system", "get", "ds", "weft", "-o", "json"])) as {
        metadata: { generation: number };
        status?: {
          numberReady?: number;
          updatedNumberScheduled?: number;
          observedGeneration?: number;
          desiredNumberScheduled?: number;
        };
      };
      const s = ds.status ?? {};
      return s.observedGeneration === ds.metadata.generation &&
        s.desiredNumberScheduled === want &&
        s.numberReady === want &&
        s.updatedNumberScheduled === want
        ? true
        : undefined;
    };

    /**
     * Starts SERVER in TARGET's network namespace (a pod NS/NAME, or a node nX). Returns {result}, not the
     * promise itself: an async function's promise would adopt it, and so wait for the stream's end.
     */
    const startServer = async (
      target: string,
      port: number,
      tag: string,
    ): Promise<{ result: Promise<StreamResult> }> => {
      const ready = join(tmp, `${tag}.ready`);
      const out = join(tmp, `${tag}.out`);
      const done = lab.cli(["exec", target, "--", process.execPath, "-e", SERVER, String(port), ready, out], 660_000);
      await lab.waitFor(
        `${tag} server listening in ${target}`,
        async () => (existsSync(ready) ? true : undefined),
        30_000,
      );
      const result = done.then((): StreamResult => {
        try {
          return JSON.parse(readFileSync(out, "utf8")) as StreamResult;
        } catch {
          return { error: "the server wrote no result" };
        }
      });
      return { result };
    };

    const startClient = (from: string, host: string, port: number, tag: string, intervalMs: number) =>
      lab.cli(
        [
          "exec",
          from,
          "--",
          process.execPath,
          "-e",
          CLIENT,
          host,
          String(port),
          join(tmp, `${tag}.stop`),
          String(intervalMs),
        ],
        660_000,
      );

    const leases = async (): Promise<Lease[]> =>
      (JSON.parse(await kc(["-n", "kube-system", "get", "leases", "-o", "json"])) as { items: Lease[] }).items.filter(
        (l) => l.metadata.name.startsWith("weft-node-"),
      );

    const watch = (key: string, args: string[]) => {
      const p = spawn(kubectlBinary(), ["--kubeconfig", lab.state().apiserver!.kubeconfig, ...args], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      p.stdout.on("data", (d: Buffer) => (watched[key] += d.toString()));
      p.stderr.on("data", (d: Buffer) => (watched[key] += `ERR ${d.toString()}`));
      watchers.push(p);
    };

    before(async () => {
      requireComponents();
      before0 = hostSnapshot();
      tmp = mkdtempSync("/tmp/weft-proof-");
      manifest = renderManifest(weftImage());
      await lab.up(["--nodes", "2"]);
      // Watch the kubelet's objects from before weft exists until the end: every version's writers.
      // go-template: kubectl 1.20's jsonpath fails on the second object of a watch ("not in range, nothing to end").
      const fmt =
        '{{.metadata.name}} {{.metadata.resourceVersion}}{{range .metadata.managedFields}} {{.manager}}{{end}}{{"\\n"}}';
      watch("lease", ["-n", "kube-node-lease", "get", "leases", "--watch", "-o", `go-template=${fmt}`]);
      watch("node", ["get", "nodes", "--watch", "-o", `go-template=${fmt}`]);
    });
    after(async () => {
      // A test that failed midway leaves its stream running: the stop files end both ends.
      if (tmp) for (const t of ["masq", "p2p", "stream", "upgrade-probe"]) writeFileSync(join(tmp, `${t}.stop`), "");
      for (const w of watchers) w.kill();
      if (!downDone) await lab.down();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    test("install: kubectl apply, every node Ready with the podCIDRs weft uses, test pods inside them", async () => {
      await kc(["apply", "-f", "-"], manifest);
      await kc(["create", "namespace", "pol"]);
      for (const [ns, name, node] of PODS) await kc(["apply", "-f", "-"], podManifest(name, node, ns));
      await lab.waitFor(
        "weft's DaemonSet ready on both nodes",
        () => dsReady(2),
        300_000,
        () => lab.log("n1/kubelet.log", 1500),
      );
      const pods = await lab.waitFor(
        "the test pods Running with an address",
        async () => {
          const ps = await testPods();
          return ps.length === PODS.length && ps.every((p) => p.status.phase === "Running" && p.status.podIP)
            ? ps
            : undefined;
        },
        300_000,
        () => lab.log("n2/kubelet.log"),
      );
      const nodes = await lab.nodes();
      assert.equal(nodes.length, 2);
      for (const n of nodes) {
        assert.equal(n.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", `${n.metadata.name} Ready`);
        const nu = n.status?.conditions?.find((c) => c.type === "NetworkUnavailable");
        assert.equal(nu?.status, "False", `${n.metadata.name}: weft set NetworkUnavailable=False`);
        const cidrs = n.spec?.podCIDRs ?? [];
        assert.equal(cidrs.length, 1, `${n.metadata.name} has a podCIDR from kube-controller-manager`);
        const ann = (n as { metadata: { annotations?: Record<string, string> } }).metadata.annotations ?? {};
        assert.deepEqual(
          ann["weft.dev/pod-cidrs"]?.split(","),
          cidrs,
          `${n.metadata.name}: weft uses Node.spec.podCIDRs`,
        );
      }
      for (const p of pods) {
        const cidr = nodes.find((n) => n.metadata.name === p.spec.nodeName)!.spec!.podCIDRs![0];
        assert.ok(
          inCidr(p.status.podIP!, cidr),
          `${p.metadata.name} ${p.status.podIP} in ${p.spec.nodeName}'s ${cidr}`,
        );
      }
    });

    test("a NetworkPolicy applied with kubectl: default-deny ingress, then an allow from a labelled pod, across nodes", async () => {
      const policies = [
        { name: "deny-ingress", spec: { podSelector: {}, policyTypes: ["Ingress"] } },
        {
          name: "a-to-b",
          spec: {
            podSelector: { matchLabels: { app: "b" } },
            policyTypes: ["Ingress"],
            ingress: [
              { from: [{ podSelector: { matchLabels: { app: "a" } } }], ports: [{ port: 80, protocol: "TCP" }] },
            ],
          },
        },
      ];
      for (const p of policies)
        await kc(
          ["apply", "-f", "-"],
          JSON.stringify({
            apiVersion: "networking.k8s.io/v1",
            kind: "NetworkPolicy",
            metadata: { name: p.name, namespace: "pol" },
            ...{ spec: p.spec },
          }),
        );
      // Allowed: everything into default; into pol only a pod to itself and pol/a (n1) -> pol/b (n2).
      const allowed = (from: string, to: string) =>
        !to.startsWith("pol/") || from === to || (from === "pol/a" && to === "pol/b");
      const keys = PODS.map(([ns, n]) => `${ns}/${n}`).sort();
      let last = "";
      await lab.waitFor(
        "the matrix shows exactly the allowed pairs",
        async () => {
          const m = await lab.cli(["matrix", "--port", "80", "-o", "json", "--timeout-ms", "1500"]);
          assert.equal(m.code, 0, m.stderr);
          const matrix = (JSON.parse(m.stdout) as { matrix: Record<string, Record<string, boolean>> }).matrix;
          assert.deepEqual(Object.keys(matrix).sort(), keys);
          const wrong = keys.flatMap((a) =>
            keys.filter((b) => matrix[a][b] !== allowed(a, b)).map((b) => `${a}->${b}=${matrix[a][b]}`),
          );
          last = wrong.join(", ");
          return wrong.length ? undefined : true;
        },
        90_000,
        () => `wrong pairs: ${last}`,
      );
      // The one allowed pair, and a denied one on the same destination from the same node, by probe.
      const ok = await lab.cli(["probe", "pol/a", "pol/b", "--port", "80", "--timeout-ms", "2000"]);
      assert.equal(ok.code, 0, `pol/a -> pol/b: ${ok.stdout}${ok.stderr}`);
      const no = await lab.cli(["probe", "pol/c", "pol/b", "--port", "80", "-o", "json", "--timeout-ms", "1500"]);
      assert.equal(no.code, 1, `pol/c -> pol/b: ${no.stdout}${no.stderr}`);
      assert.equal((JSON.parse(no.stdout) as { result: string }).result, "timeout", "a policy drop, not a refusal");
      // The deny log (tcpdump on NFLOG, in the image): n2's agent logs the drop, naming the pod and the policy.
      const testPodsNow = await testPods();
      const ip = (name: string) => testPodsNow.find((p) => p.metadata.namespace === "pol" && p.metadata.name === name)!;
      const [cIp, bIp] = [ip("c").status.podIP!, ip("b").status.podIP!];
      const logs = join(lab.dir, "n2", "host", "log-pods");
      const agentLog = (): string =>
        readdirSync(logs)
          .filter((d) => d.startsWith("kube-system_weft-"))
          .flatMap((d) => {
            const dir = join(logs, d, "weft");
            return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), "utf8")) : [];
          })
          .join("");
      const denied = await lab.waitFor(
        "n2's agent to log the denied connection",
        async () =>
          agentLog()
            .split("\n")
            .find((l) => l.includes(`denied ingress TCP ${cIp}:`) && l.includes(`-> ${bIp}:80`)),
        30_000,
        () => agentLog().slice(-1500),
      );
      assert.match(denied, /\(pol\/b; isolated by [^)]*pol\/(deny-ingress|a-to-b)/);
    });

    test("masquerade: a pod reaching a node address outside the cluster CIDRs shows as its node; pod to pod keeps the pod's address", async () => {
      const n1 = nodeOf("n1");
      const n2 = nodeOf("n2");
      const pods = await testPods();
      const m1 = pods.find((p) => p.metadata.name === "m1")!;
      const m2 = pods.find((p) => p.metadata.name === "m2")!;
      writeFileSync(join(tmp, "masq.stop"), "");
      writeFileSync(join(tmp, "p2p.stop"), "");
      const outside = await startServer("n2", 7100, "masq");
      const c1 = await startClient("default/m1", n2.ipv4, 7100, "masq", 10);
      assert.equal(c1.code, 0, c1.stderr);
      const r1 = await outside.result;
      assert.equal(r1.error, undefined, JSON.stringify(r1));
      assert.equal(r1.remote, n1.ipv4, `n2's underlay address ${n2.ipv4} sees m1 (${m1.status.podIP}) as node n1`);
      const inside = await startServer("default/m2", 7101, "p2p");
      const c2 = await startClient("default/m1", m2.status.podIP!, 7101, "p2p", 10);
      assert.equal(c2.code, 0, c2.stderr);
      const r2 = await inside.result;
      assert.equal(r2.remote, m1.status.podIP, "pod to pod is not masqueraded");
      const nat = await inNodeNet("n1", ["nft", "list", "table", "inet", "weft_nat"]);
      assert.equal(nat.code, 0, `the masquerade table inet weft_nat on n1: ${nat.stderr}`);
    });

    test("rolling upgrade to another image tag while a TCP stream between pods on two nodes flows", async () => {
      // A second tag of the image, built as a user would, imported into every node's containerd.
      const built = await runStatus(
        [
          "bash",
          join(ROOT, "scripts/image.sh"),
          "--tag",
          UPGRADE_TAG.split(":")[1],
          "--cache",
          join(tmp, "images"),
          "--list",
        ],
        {
          timeoutMs: 600_000,
        },
      );
      assert.equal(built.code, 0, built.stderr.slice(-2000));
      const list = JSON.parse(built.stdout) as { images: Array<{ name: string; archive: string }> };
      const archive = list.images.find((i) => i.name === UPGRADE_TAG)?.archive;
      assert.ok(archive, `scripts/image.sh --tag built ${UPGRADE_TAG}: ${built.stdout.slice(0, 500)}`);
      const b = binaries();
      for (const n of lab.state().nodes)
        run(ctr(b, n, realOf(n.name), ["images", "import", archive]), `import into ${n.name}`, 300_000);

      const pods0 = Object.fromEntries((await testPods()).map((p) => [p.metadata.name, p.status.podIP]));
      const leases0 = (await leases()).map((l) => [l.metadata.name, l.metadata.uid, l.spec?.holderIdentity]).sort();
      assert.equal(leases0.length, 2, "one weft-node lease per node");
      const cidrs0 = (await lab.nodes()).map((n) => [n.metadata.name, n.spec?.podCIDRs]);
      const agents0 = (await weftPods()).map((p) => p.metadata.name).sort();

      const server = await startServer("default/m2", 7200, "stream");
      const client = startClient("default/m1", pods0.m2!, 7200, "stream", 20);
      // The stream flows before the rollout starts.
      const flowing = join(tmp, "stream.out.flowing");
      await lab.waitFor("the stream flowing", async () => (existsSync(flowing) ? true : undefined), 30_000);
      // New connections too, both ways, every 50 ms: an established stream rides out an outage on TCP's
      // retransmissions, a new connection does not. The timeout is generous: made, not how fast.
      const probers = startProbers(
        lab,
        [
          { key: "default/m1", ip: pods0.m1! },
          { key: "default/m2", ip: pods0.m2! },
        ],
        { port: 80, intervalMs: 50, timeoutMs: 5000, dir: tmp, tag: "upgrade-probe" },
      );
      await probers.ready();
      const kernel = await watchNodeKernels(lab);
      const setAt = Date.now();
      await kc(["-n", "kube-system", "set", "image", "ds/weft", `weft=${UPGRADE_TAG}`, `install-cni=${UPGRADE_TAG}`]);
      const rs = await runStatus(
        [
          kubectlBinary(),
          "--kubeconfig",
          lab.state().apiserver!.kubeconfig,
          "-n",
          "kube-system",
          "rollout",
          "status",
          "ds/weft",
          "--timeout=300s",
        ],
        { timeoutMs: 320_000 },
      );
      assert.equal(rs.code, 0, `rollout status: ${rs.stdout}${rs.stderr}`);
      await lab.waitFor("both agents ready on the new image", () => dsReady(2), 120_000);
      const agents1 = await weftPods();
      assert.ok(
        agents1.every((p) => !agents0.includes(p.metadata.name)),
        "every agent pod was replaced",
      );
      // The pods' spec, not containerStatuses[].image: the tag is the same image (same digest), which
      // containerd's CRI reports under whichever of its names it lists first.
      const images = JSON.parse(
        await kc(["-n", "kube-system", "get", "pods", "-l", "app.kubernetes.io/name=weft", "-o", "json"]),
      ) as {
        items: Array<{ spec: { containers: Array<{ image: string }>; initContainers?: Array<{ image: string }> } }>;
      };
      assert.equal(images.items.length, 2);
      for (const p of images.items)
        for (const c of [...p.spec.containers, ...(p.spec.initContainers ?? [])])
          assert.equal(c.image, UPGRADE_TAG, "the agent pods run the new tag");

      // Stop the stream and the probers after the rollout and a few more lines through the new agents.
      const probed = await probers.stop();
      const seen = await kernel.stop();
      const windows = probed.flatMap((p) => describeWindows(p.from, p, setAt));
      for (const p of probed) {
        assert.equal(p.error, undefined, `the prober in ${p.from}: ${p.error}`);
        assert.ok(p.ok > 20, `the prober in ${p.from}: ${p.ok} new connections made`);
      }
      assert.deepEqual(
        probed.map((p) => [p.from, p.failed]),
        probed.map((p) => [p.from, 0]),
        `new connections failed during the rollout (${probed.map((p) => p.sent).join(" + ")} sent): ${windows.join("; ")}`,
      );
      for (const w of seen) {
        assert.deepEqual(
          w.deleted.filter((l) => /weft\./.test(l)),
          [],
          `${w.node}: weft's routes, neighbours or links deleted during the rollout`,
        );
        assert.equal(w.vtep.after, w.vtep.before, `${w.node}: the VTEP was recreated`);
      }
      process.stdout.write(
        `# upgrade: ${probed.map((p) => `${p.from} ${p.ok} new connections, slowest ${p.maxMs} ms`).join("; ")}\n`,
      );
      writeFileSync(join(tmp, "stream.stop"), "");
      const c = await client;
      assert.equal(c.code, 0, `the client's connection survived: ${c.stderr}`);
      const sent = (JSON.parse(c.stdout) as { sent: number }).sent;
      const r = await server.result;
      assert.equal(r.error, undefined, JSON.stringify(r));
      assert.equal(r.bad, 0, "every counter line arrived, in order");
      assert.equal(r.received, sent, `received ${r.received} of ${sent}`);
      assert.equal(r.remote, pods0.m1, "the stream kept the pod's source address");
      process.stdout.write(`# upgrade: ${sent} lines, longest gap ${r.maxGapMs} ms\n`);

      const pods1 = Object.fromEntries((await testPods()).map((p) => [p.metadata.name, p.status.podIP]));
      assert.deepEqual(pods1, pods0, "pod addresses unchanged");
      const leases1 = (await leases()).map((l) => [l.metadata.name, l.metadata.uid, l.spec?.holderIdentity]).sort();
      assert.deepEqual(leases1, leases0, "weft's leases are the same objects (not re-created)");
      assert.deepEqual(
        (await lab.nodes()).map((n) => [n.metadata.name, n.spec?.podCIDRs]),
        cidrs0,
        "podCIDRs unchanged",
      );
    });

    test("agent down on n2: a new pod gets CNI error 11 and runs once the agent is back; a pod deleted meanwhile leaves nothing", async () => {
      const links0 = await wfLinks("n2");
      const onN2 = (await testPods()).filter((p) => p.spec.nodeName === "n2");
      assert.equal(links0.length, onN2.length, `one host veth per pod on n2: ${links0.join(" ")}`);
      const goneIP = onN2.find((p) => p.metadata.name === "gone")!.status.podIP!;

      await kc([
        "-n",
        "kube-system",
        "patch",
        "ds",
        "weft",
        "--type",
        "merge",
        "-p",
        JSON.stringify({ spec: { template: { spec: { nodeSelector: { "kubernetes.io/hostname": "n1" } } } } }),
      ]);
      await lab.waitFor(
        "weft's agent gone from n2",
        async () => ((await weftPods()).some((p) => p.spec.nodeName === "n2") ? undefined : true),
        120_000,
      );
      await lab.waitFor("weft's agent back on n1 alone", () => dsReady(1), 120_000);

      await kc(["delete", "pod", "gone", "--wait=true", "--timeout=120s"]);
      await kc(["apply", "-f", "-"], podManifest("late", "n2"));
      const event = await lab.waitFor(
        "late's sandbox failing with CNI error 11",
        async () => {
          const ev = JSON.parse(
            await kc(["get", "events", "--field-selector", "involvedObject.name=late", "-o", "json"]),
          ) as {
            items: Array<{ reason: string; message: string }>;
          };
          return ev.items.find((e) => /try again later/i.test(e.message))?.message;
        },
        120_000,
        () => lab.log("n2/kubelet.log", 1500),
      );
      assert.match(event, /try again later/i);
      const late0 = (await lab.pods()).find((p) => p.metadata.name === "late");
      assert.notEqual(late0?.status.phase, "Running");

      await kc([
        "-n",
        "kube-system",
        "patch",
        "ds",
        "weft",
        "--type",
        "merge",
        "-p",
        JSON.stringify({ spec: { template: { spec: { nodeSelector: null } } } }),
      ]);
      await lab.waitFor("weft's agents ready on both nodes", () => dsReady(2), 180_000);
      const late = await lab.waitFor(
        "late Running once the agent is back",
        async () => {
          const p = (await lab.pods()).find((x) => x.metadata.name === "late");
          return p?.status.phase === "Running" && p.status.podIP ? p : undefined;
        },
        180_000,
        () => lab.log("n2/kubelet.log", 1500),
      );
      const cidr = (await lab.nodes()).find((n) => n.metadata.name === "n2")!.spec!.podCIDRs![0];
      assert.ok(inCidr(late.status.podIP!, cidr));
      const probe = await lab.cli(["probe", "default/m1", "default/late", "--port", "80", "--timeout-ms", "2000"]);
      assert.equal(probe.code, 0, `m1 -> late: ${probe.stdout}${probe.stderr}`);

      // The queued DEL was replayed: gone's veth is gone, late's is there, and no address leaked.
      const socket = join(bindOf("n2", "/run/weft"), "weft.sock");
      const check = await lab.waitFor(
        "ipam check on n2 clean, one allocation per pod",
        async () => {
          const r = await inNodeNet("n2", [
            process.execPath,
            WEFT_BIN,
            "ipam",
            "check",
            "--socket",
            socket,
            "-o",
            "json",
          ]);
          const rep = JSON.parse(r.stdout) as { allocations: number; leaked: unknown[]; conflicts: unknown[] };
          const links = await wfLinks("n2");
          return r.code === 0 && rep.allocations === onN2.length && links.length === onN2.length
            ? { rep, links }
            : undefined;
        },
        60_000,
      );
      assert.deepEqual(check.rep.leaked, []);
      assert.equal(check.links.filter((l) => !links0.includes(l)).length, 1, "late's veth is new");
      assert.equal(links0.filter((l) => !check.links.includes(l)).length, 1, "gone's veth was removed");
      const addrs = await inNodeNet("n2", ["ip", "-o", "-4", "route", "show", goneIP]);
      assert.equal(addrs.stdout.trim(), "", `no route left to gone's ${goneIP}`);
    });

    test("the kubelet's Lease and Node are never written by weft; weft's writes on a Node are its own fields", async () => {
      const nodeNames = (await lab.nodes()).map((n) => n.metadata.name);
      // The kubelet's Lease: every version the watch saw was written by the kubelet alone.
      const leaseLines = watched.lease.split("\n").filter((l) => l.trim());
      assert.ok(!watched.lease.includes("ERR "), watched.lease.slice(0, 500));
      for (const n of nodeNames)
        assert.ok(
          leaseLines.filter((l) => l.startsWith(`${n} `)).length >= 2,
          `the watch saw ${n}'s Lease renewed: ${watched.lease.slice(-500)}`,
        );
      for (const l of leaseLines) assert.deepEqual(l.split(" ").slice(2), ["kubelet"], `kube-node-lease: ${l}`);
      // The Nodes: writers seen over the whole run, then what weft's managers own.
      const nodes = JSON.parse(await kc(["get", "nodes", "-o", "json"])) as {
        items: Array<{ metadata: { name: string; managedFields?: ManagedField[] } }>;
      };
      const weftManagers = new Set<string>();
      for (const n of nodes.items)
        for (const f of n.metadata.managedFields ?? []) {
          if (NODE_WRITERS.includes(f.manager)) continue;
          weftManagers.add(f.manager);
          const bad = fieldPaths(f.fieldsV1 ?? {}).filter((p) => !WEFT_NODE_FIELDS.some((re) => re.test(p)));
          assert.deepEqual(
            bad,
            [],
            `${n.metadata.name}: ${f.manager} (${f.operation}) owns fields weft must not write`,
          );
        }
      assert.ok(weftManagers.size >= 1, "weft's writes show in the Nodes' managedFields");
      for (const l of watched.node.split("\n").filter((x) => x.trim()))
        for (const m of l.split(" ").slice(2))
          assert.ok(NODE_WRITERS.includes(m) || weftManagers.has(m), `a Node version written by ${m}: ${l}`);
    });

    test("each kubelet has its own identity (system:node:NAME): its credentials reach its own Node and Lease, not another node's", async () => {
      // What the kubelet on n1 runs with, through n1's own forwarder to the API server.
      const asN1 = (args: string[]) =>
        inNodeNet("n1", [kubectlBinary(), "--kubeconfig", nodeKubeconfig(nodeOf("n1")), ...args]);
      const own = await asN1(["get", "node", "n1", "-o", "name"]);
      assert.equal(own.code, 0, `n1's kubelet reads its Node: ${own.stderr}`);
      const lease = await asN1(["-n", "kube-node-lease", "get", "lease", "n1", "-o", "name"]);
      assert.equal(lease.code, 0, `n1's kubelet reads its Lease: ${lease.stderr}`);
      // NodeRestriction and the Node authorizer: another node's objects are not its to write.
      const other = await asN1(["annotate", "node", "n2", "weft.test/by-n1=x"]);
      assert.notEqual(other.code, 0, "n1's kubelet must not write Node n2");
      assert.match(other.stderr, /forbidden/i);
      const otherLease = await asN1(["-n", "kube-node-lease", "annotate", "lease", "n2", "weft.test/by-n1=x"]);
      assert.notEqual(otherLease.code, 0, "n1's kubelet must not write n2's Lease");
      assert.match(otherLease.stderr, /forbidden/i);
      const secrets = await asN1(["-n", "kube-system", "get", "secrets"]);
      assert.notEqual(secrets.code, 0, "n1's kubelet must not list secrets");
    });

    test("uninstall: kubectl delete -f, then weft uninstall --real-node --yes in each node leaves nothing of weft", async () => {
      await kc(["delete", "-f", "-", "--wait=true", "--timeout=120s"], manifest);
      await lab.waitFor("weft's pods gone", async () => ((await weftPods()).length ? undefined : true), 120_000);
      for (const n of lab.state().nodes) {
        const r = realOf(n.name);
        const u = await runStatus([...inNode(n, r), process.execPath, WEFT_BIN, "uninstall", "--real-node", "--yes"], {
          timeoutMs: 60_000,
        });
        assert.equal(u.code, 0, `${n.name}: ${u.stdout}${u.stderr}`);
        const links = await inNodeNet(n.name, ["ip", "-o", "link", "show"]);
        assert.doesNotMatch(links.stdout, /: (weft[.\w-]*|wf[0-9a-f]{11})[@:]/, `${n.name}: weft links left`);
        for (const fam of ["-4", "-6"]) {
          const routes = await inNodeNet(n.name, ["ip", fam, "route", "show", "table", "all", "proto", "230"]);
          assert.equal(routes.stdout.trim(), "", `${n.name}: weft routes left`);
        }
        const nft = await inNodeNet(n.name, ["nft", "list", "tables"]);
        assert.equal(nft.code, 0, nft.stderr);
        assert.doesNotMatch(nft.stdout, /weft/, `${n.name}: weft nft tables left`);
        const bin = readdirSync(bindOf(n.name, "/opt/cni/bin"));
        assert.deepEqual(
          bin.filter((f) => f.startsWith("weft")),
          [],
          `${n.name}: plugin binaries left`,
        );
        const conf = readdirSync(bindOf(n.name, "/etc/cni/net.d"));
        assert.deepEqual(
          conf.filter((f) => f.includes("weft")),
          [],
          `${n.name}: conflist left`,
        );
        for (const d of ["/var/lib/weft", "/run/weft"]) {
          const dir = bindOf(n.name, d);
          assert.deepEqual(existsSync(dir) ? readdirSync(dir) : [], [], `${n.name}: files left in ${d}`);
        }
      }
    });

    test("lab down leaves nothing and restores the sysctls", async () => {
      for (const w of watchers) w.kill();
      const d = await lab.down();
      downDone = true;
      assert.equal(d.code, 0, d.stderr);
      assert.deepEqual(await lab.leftovers(before0), []);
    });
  },
);
