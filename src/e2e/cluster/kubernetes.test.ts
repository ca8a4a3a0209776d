// The lab on a real kube-apiserver (--store kubernetes): agents register Nodes and lease pod CIDRs
// through the Kubernetes API, pods on both nodes connect, and kubectl — not weft — shows the
// nodes with their podCIDRs.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runStatus } from "../../kernel/exec.js";
import { apiserverBinary } from "../../lab/apiserver.js";
import { kubectlBinary, kubectlSkipReason } from "../../testlib/kubectl.js";
import { ClusterLab, inCidr, matrixKeys, skipReason, unconnected } from "./fixture.js";

const skip =
  skipReason() ??
  (!existsSync(apiserverBinary())
    ? `${apiserverBinary()} is absent: build it with bash scripts/kube-apiserver.sh (about 11 minutes cold)`
    : undefined) ??
  kubectlSkipReason();

const PODS = [
  { name: "a", node: "n1" },
  { name: "b", node: "n2" },
];
const KEYS = PODS.map((p) => `default/${p.name}`);

interface KubeNode {
  metadata: { name: string };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { conditions?: Array<{ type: string; status: string }> };
}

describe("--store kubernetes: 2 nodes on a real kube-apiserver", { skip, timeout: 180_000 }, () => {
  const lab = new ClusterLab();
  const tmp = mkdtempSync(join(tmpdir(), "wt-e2e-kube-"));
  const kubeconfig = join(tmp, "kubeconfig");

  before(async () => {
    await lab.up(["--nodes", "2", "--backend", "vxlan", "--store", "kubernetes"]);
    // What `kubectl --kubeconfig <(weft lab kubeconfig)` does, with a file the test can remove.
    writeFileSync(kubeconfig, await lab.weftOk(["lab", "kubeconfig"]), { mode: 0o600 });
    await lab.applyPods(PODS);
    await lab.waitRunning(KEYS, 90_000);
  });
  after(async () => {
    rmSync(tmp, { recursive: true, force: true });
    await lab.down();
  });

  test("kubectl get nodes shows both nodes with distinct podCIDRs; pods have addresses from them", async () => {
    const r = await runStatus([kubectlBinary(), "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const items = (JSON.parse(r.stdout) as { items: KubeNode[] }).items;
    assert.deepEqual(items.map((n) => n.metadata.name).sort(), ["n1", "n2"]);
    const cidrs = items.map((n) => n.spec?.podCIDRs?.[0]);
    for (const [i, c] of cidrs.entries())
      assert.ok(
        c && inCidr(c.split("/")[0], "10.244.0.0/16"),
        `${items[i].metadata.name} podCIDRs ${JSON.stringify(items[i].spec)}`,
      );
    assert.notEqual(cidrs[0], cidrs[1]);
    // The lab kubelet reports its nodes Ready, as a kubelet does: kubectl's STATUS column.
    for (const n of items)
      assert.equal(n.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", `${n.metadata.name} Ready`);
    assert.match(
      (await runStatus([kubectlBinary(), "--kubeconfig", kubeconfig, "get", "nodes", "--no-headers"])).stdout,
      /^n1\s+Ready\s[\s\S]*^n2\s+Ready\s/m,
    );

    const pods = await lab.pods();
    for (const want of PODS) {
      const p = pods.find((x) => x.metadata.name === want.name)!;
      const cidr = items.find((n) => n.metadata.name === want.node)!.spec!.podCIDRs![0];
      assert.ok(
        p.status?.podIP && inCidr(p.status.podIP, cidr),
        `${want.name} ${p.status?.podIP} in ${want.node}'s ${cidr}`,
      );
    }
    // kubectl sees the same pods weft shows (one API, not two stores).
    const kp = await runStatus([
      kubectlBinary(),
      "--kubeconfig",
      kubeconfig,
      "get",
      "pods",
      "-n",
      "default",
      "-o",
      "json",
    ]);
    assert.equal(kp.code, 0, kp.stderr);
    const kubePods = (
      JSON.parse(kp.stdout) as { items: Array<{ metadata: { name: string }; status?: { phase?: string } }> }
    ).items;
    for (const want of PODS)
      assert.equal(
        kubePods.find((x) => x.metadata.name === want.name)?.status?.phase,
        "Running",
        `kubectl: ${want.name} Running`,
      );
  });

  for (const [protocol, port] of [
    ["TCP", 80],
    ["UDP", 53],
  ] as const) {
    test(`lab matrix ${protocol}/${port}: pods on both nodes connected`, async () => {
      const m = await lab.matrix(["--port", String(port), "--protocol", protocol]);
      assert.deepEqual(matrixKeys(m.matrix), { from: KEYS, to: KEYS });
      assert.deepEqual(unconnected(m.matrix), []);
    });
  }
});
