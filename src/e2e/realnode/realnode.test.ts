// Real nodes in the lab (`weft lab up --kubelet real`), as a user checks them: 2 nodes whose
// containerd 1.6 (CRI) and kubelet 1.20 run in the nodes' namespaces register NotReady until a CNI
// conflist lands in their conf dir; with the reference bridge + host-local plugins as the CNI (a
// stand-in for weft's DaemonSet) they turn Ready, pods placed by kube-scheduler run through the CRI
// with addresses from their node's podCIDR, `lab exec`, `probe` and `matrix` work on them, and
// `lab down` leaves nothing on the machine and restores the sysctls the kubelet changed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { run } from "../../kernel/exec.js";
import { inCidr } from "../cluster/fixture.js";
import { installBridgeCni } from "./manifest.js";
import { hostSnapshot, RealLab, requireComponents, skipReason, type HostSnapshot, type NodeJson } from "./fixture.js";

const skip = skipReason();
const NODES = ["n1", "n2"];
const PODS = [
  { name: "a", node: "n1" },
  { name: "b", node: "n2" },
  { name: "c", node: "n2" },
];

function ready(n: NodeJson): { status: string; message: string } {
  const c = n.status?.conditions?.find((x) => x.type === "Ready");
  return { status: c?.status ?? "Unknown", message: c?.message ?? "" };
}

/** busybox's httpd (any image works as a probe source), or the lab pod image serving TCP 80 and UDP 53. */
function podManifest(name: string, node: string, image: "busybox" | "lab-pod"): string {
  const main =
    image === "busybox"
      ? {
          image: "localhost/weft/busybox:1",
          command: ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/"],
          ports: [{ containerPort: 80 }],
        }
      : {
          image: "localhost/weft/lab-pod:1",
          args: ["80/TCP", "53/UDP"],
          ports: [{ containerPort: 80 }, { containerPort: 53, protocol: "UDP" }],
        };
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", labels: { app: name } },
    spec: {
      // The scheduler places it (no nodeName): the selector only says where.
      nodeSelector: { "kubernetes.io/hostname": node },
      terminationGracePeriodSeconds: 1,
      containers: [{ name: "main", imagePullPolicy: "Never", ...main }],
    },
  });
}

const CASES = [
  { dualStack: false, image: "busybox" },
  { dualStack: true, image: "lab-pod" },
] as const;

for (const { dualStack, image } of CASES) {
  describe(
    `lab up --kubelet real: 2 real nodes (containerd CRI + kubelet 1.20)${dualStack ? ", dual-stack" : ""}, ${image} pods`,
    { skip, timeout: 900_000 },
    () => {
      const lab = new RealLab();
      let before0: HostSnapshot;
      let downDone = false;

      before(async () => {
        requireComponents();
        before0 = hostSnapshot();
        await lab.up(["--nodes", "2", ...(dualStack ? ["--dual-stack"] : [])]);
      });
      after(async () => {
        if (!downDone) await lab.down();
      });

      test("both nodes register, NotReady because no CNI config is there yet", async () => {
        const nodes = await lab.waitFor(
          "2 nodes NotReady for want of a CNI config",
          async () => {
            const ns = await lab.nodes();
            const ok =
              ns.length === 2 &&
              ns.every((n) => ready(n).status === "False" && /cni|network plugin/i.test(ready(n).message));
            return ok ? ns : undefined;
          },
          120_000,
          () => lab.log("n1/kubelet.log"),
        );
        assert.deepEqual(nodes.map((n) => n.metadata.name).sort(), NODES);
        for (const n of nodes) assert.match(ready(n).message, /cni/i, `${n.metadata.name}: ${ready(n).message}`);
      });

      test("with a bridge + host-local conflist in each node's conf dir the nodes turn Ready", async () => {
        const st = lab.state();
        const nodes = await lab.waitFor(
          "podCIDRs from kube-controller-manager",
          async () => {
            const ns = await lab.nodes();
            return ns.every((n) => (n.spec?.podCIDRs ?? []).length === (dualStack ? 2 : 1)) ? ns : undefined;
          },
          120_000,
          () => lab.log("kube-controller-manager.log"),
        );
        for (const n of st.nodes) {
          const cidrs = nodes.find((x) => x.metadata.name === n.name)!.spec!.podCIDRs!;
          installBridgeCni(n, cidrs);
          // Cross-node routes, host-gw style, inside the lab's node namespaces (bridge only wires pods locally).
          for (const o of st.nodes) {
            if (o.name === n.name) continue;
            for (const oc of nodes.find((x) => x.metadata.name === o.name)!.spec!.podCIDRs!) {
              const v6 = oc.includes(":");
              await run([
                "ip",
                "-n",
                n.netns,
                ...(v6 ? ["-6"] : []),
                "route",
                "replace",
                oc,
                "via",
                v6 ? o.ipv6! : o.ipv4,
              ]);
            }
          }
        }
        await lab.waitFor(
          "both nodes Ready",
          async () => {
            const ns = await lab.nodes();
            return ns.length === 2 && ns.every((n) => ready(n).status === "True") ? true : undefined;
          },
          120_000,
          () => lab.log("n1/kubelet.log"),
        );
      });

      test("pods placed by kube-scheduler run through containerd CRI with addresses from their node's podCIDR", async () => {
        for (const p of PODS) await lab.kubectl(["apply", "-f", "-"], podManifest(p.name, p.node, image));
        const pods = await lab.waitFor(
          "3 pods Running with an address",
          async () => {
            const ps = (await lab.pods()).filter((p) => PODS.some((x) => x.name === p.metadata.name));
            return ps.length === PODS.length && ps.every((p) => p.status.phase === "Running" && p.status.podIP)
              ? ps
              : undefined;
          },
          300_000,
          () => `${lab.log("kube-scheduler.log", 800)} ${lab.log("n2/kubelet.log")}`,
        );
        const nodes = await lab.nodes();
        for (const p of pods) {
          const want = PODS.find((x) => x.name === p.metadata.name)!.node;
          assert.equal(p.spec.nodeName, want, `${p.metadata.name} placed on ${want}`);
          const cidrs = nodes.find((n) => n.metadata.name === want)!.spec!.podCIDRs!;
          const ips = (p.status.podIPs ?? []).map((x) => x.ip);
          assert.equal(ips.length, cidrs.length, `${p.metadata.name} has one address per family: ${ips.join(", ")}`);
          for (const [i, c] of cidrs.entries()) assert.ok(inCidr(ips[i], c), `${p.metadata.name} ${ips[i]} in ${c}`);
        }
        // The containers are containerd's, in the node's containerd (k8s.io namespace).
        const st = lab.state();
        const r = st.real!.nodes[1];
        const list = await run([
          "nsenter",
          `--mount=${r.mntns}`,
          `--net=/run/netns/${st.nodes[1].netns}`,
          "--",
          "ctr",
          "--address",
          r.containerdSocket,
          "-n",
          "k8s.io",
          "containers",
          "ls",
        ]);
        assert.match(list, image === "busybox" ? /localhost\/weft\/busybox:1/ : /localhost\/weft\/lab-pod:1/);
        assert.match(list, /localhost\/weft\/pause:3\.4/);
      });

      test("lab exec, probe and matrix work on the real pods", async () => {
        const pods = await lab.pods();
        const ipOf = (name: string) => pods.find((p) => p.metadata.name === name)!.status.podIP!;
        const ex = await lab.cli(["exec", "default/a", "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
        assert.equal(ex.code, 0, ex.stderr);
        assert.ok(ex.stdout.includes(`${ipOf("a")}/`), `exec shows a's address ${ipOf("a")}: ${ex.stdout}`);

        const pr = await lab.cli([
          "probe",
          "default/a",
          "default/b",
          "--port",
          "80",
          "-o",
          "json",
          "--timeout-ms",
          "3000",
        ]);
        assert.equal(pr.code, 0, pr.stderr || pr.stdout);
        assert.equal((JSON.parse(pr.stdout) as { result: string }).result, "connected");

        const closed = await lab.cli([
          "probe",
          "default/b",
          "default/c",
          "--port",
          "81",
          "-o",
          "json",
          "--timeout-ms",
          "3000",
        ]);
        assert.equal(closed.code, 1, closed.stderr || closed.stdout);
        assert.equal((JSON.parse(closed.stdout) as { result: string }).result, "refused");

        const runs: string[][] = [["--port", "80"]];
        if (dualStack) runs.push(["--port", "80", "--family", "6"]);
        if (image === "lab-pod") runs.push(["--port", "53", "--protocol", "UDP"]);
        for (const args of runs) {
          const m = await lab.cli(["matrix", ...args, "-o", "json", "--timeout-ms", "3000"]);
          assert.equal(m.code, 0, m.stderr);
          const matrix = (JSON.parse(m.stdout) as { matrix: Record<string, Record<string, boolean>> }).matrix;
          const keys = PODS.map((p) => `default/${p.name}`);
          assert.deepEqual(Object.keys(matrix).sort(), keys, args.join(" "));
          for (const a of keys)
            for (const b of keys) assert.equal(matrix[a][b], true, `${args.join(" ")}: ${a} -> ${b}`);
        }
      });

      test("lab down leaves nothing: no process, mount, cgroup, netns or made directory; sysctls restored", async () => {
        const d = await lab.down();
        downDone = true;
        assert.equal(d.code, 0, d.stderr);
        assert.deepEqual(await lab.leftovers(before0), []);
        assert.ok(!existsSync(lab.dir));
      });
    },
  );
}
