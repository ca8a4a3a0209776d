// weft installed as users install it, on real nodes: `kubectl apply -f deploy/weft.yaml` on a
// `weft lab up --kubelet real` lab (containerd CRI + kubelet 1.20 per node). The nodes are NotReady
// until weft's DaemonSet installs its conflist; then pods placed by the scheduler get weft's
// addresses from their node's podCIDRs and reach each other across nodes (TCP and UDP matrix), over
// IPv4 and, on a dual-stack lab, IPv6 too; `lab down` leaves nothing. The only change to the manifest is the lab's: the agent's image tag
// (the one scripts/image.sh built from this checkout), the API server's address (no kube-proxy
// here, so the ConfigMap's agent.json gets "apiServer": the node's forwarder on 127.0.0.1:6443) and,
// dual-stack, settings.json's clusterCIDRs (both families, as kube-controller-manager's --cluster-cidr).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../testlib/lab.js";
import { inCidr } from "../cluster/fixture.js";
import { CLUSTER_CIDR_V4, CLUSTER_CIDR_V6 } from "../../lab/names.js";
import { podManifest, renderManifest, weftImage } from "./manifest.js";
import { hostSnapshot, RealLab, requireComponents, skipReason, type HostSnapshot } from "./fixture.js";

const skip = skipReason();
const PODS = [
  { name: "a", node: "n1" },
  { name: "b", node: "n2" },
  { name: "c", node: "n2" },
];

for (const dualStack of [false, true])
  describe(
    `kubectl apply -f deploy/weft.yaml on 2 real nodes${dualStack ? ", dual-stack" : ""}`,
    { skip, timeout: 900_000 },
    () => {
      const lab = new RealLab();
      let before0: HostSnapshot;
      let downDone = false;

      before(async () => {
        requireComponents();
        if (!existsSync(join(ROOT, "deploy", "weft.yaml"))) throw new Error("deploy/weft.yaml is missing");
        before0 = hostSnapshot();
        await lab.up(["--nodes", "2", ...(dualStack ? ["--dual-stack"] : [])]);
      });
      after(async () => {
        if (!downDone) await lab.down();
      });

      test("nodes are NotReady until weft's DaemonSet runs, then Ready", async () => {
        const nodes = await lab.nodes();
        assert.equal(nodes.length, 2);
        const cidrs = dualStack ? [CLUSTER_CIDR_V4, CLUSTER_CIDR_V6] : undefined;
        await lab.kubectl(["apply", "-f", "-"], renderManifest(weftImage(), undefined, cidrs));
        await lab.waitFor(
          "weft's DaemonSet ready on both nodes and both nodes Ready",
          async () => {
            const ds = JSON.parse(await lab.kubectl(["-n", "kube-system", "get", "ds", "weft", "-o", "json"])) as {
              status?: { numberReady?: number };
            };
            const ns = await lab.nodes();
            const ready = ns.every((n) => n.status?.conditions?.find((c) => c.type === "Ready")?.status === "True");
            return ds.status?.numberReady === 2 && ready ? true : undefined;
          },
          300_000,
          () => lab.log("n1/kubelet.log", 1500),
        );
      });

      test("pods get weft's addresses from their node's podCIDR and reach each other across nodes", async () => {
        for (const p of PODS) await lab.kubectl(["apply", "-f", "-"], podManifest(p.name, p.node));
        const pods = await lab.waitFor(
          "3 pods Running with an address",
          async () => {
            const ps = (await lab.pods()).filter((p) => PODS.some((x) => x.name === p.metadata.name));
            return ps.length === PODS.length && ps.every((p) => p.status.phase === "Running" && p.status.podIP)
              ? ps
              : undefined;
          },
          300_000,
          () => lab.log("n2/kubelet.log"),
        );
        const nodes = await lab.nodes();
        for (const p of pods) {
          const cidrs = nodes.find((n) => n.metadata.name === p.spec.nodeName)!.spec!.podCIDRs!;
          assert.equal(cidrs.length, dualStack ? 2 : 1, `${p.spec.nodeName}'s podCIDRs ${cidrs.join(",")}`);
          const ips = (p.status.podIPs ?? [{ ip: p.status.podIP! }]).map((x) => x.ip);
          assert.equal(ips.length, cidrs.length, `${p.metadata.name}: one address per family, got ${ips.join(",")}`);
          for (const [i, cidr] of cidrs.entries())
            assert.ok(inCidr(ips[i], cidr), `${p.metadata.name} ${ips[i]} in ${cidr}`);
        }
        for (const args of [
          ["--port", "80"],
          ["--port", "53", "--protocol", "UDP"],
          ...(dualStack ? [["--port", "80", "--family", "6"]] : []),
        ]) {
          const m = await lab.cli(["matrix", ...args, "-o", "json", "--timeout-ms", "3000"]);
          assert.equal(m.code, 0, m.stderr);
          const matrix = (JSON.parse(m.stdout) as { matrix: Record<string, Record<string, boolean>> }).matrix;
          const keys = PODS.map((p) => `default/${p.name}`);
          assert.deepEqual(Object.keys(matrix).sort(), keys);
          for (const a of keys)
            for (const b of keys) assert.equal(matrix[a][b], true, `${args.join(" ")}: ${a} -> ${b}`);
        }
      });

      test("lab down leaves nothing and restores the sysctls", async () => {
        const d = await lab.down();
        downDone = true;
        assert.equal(d.code, 0, d.stderr);
        assert.deepEqual(await lab.leftovers(before0), []);
      });
    },
  );
