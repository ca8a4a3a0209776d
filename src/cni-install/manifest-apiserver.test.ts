// deploy/weft.yaml against a real kube-apiserver 1.20 (RBAC on): it is accepted as is (schema,
// priority class, RBAC objects), and the ServiceAccount may do what the agent does and nothing more.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runStatus } from "../kernel/exec.js";
import { kubeApiserverBinary, startKubeApiserver, type KubeApiserver } from "../lab/apiserver-process.js";
import { kubectlBinary, kubectlSkipReason } from "../testlib/kubectl.js";
import { existsSync } from "node:fs";

const MANIFEST = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "deploy", "weft.yaml");
const skip = kubectlSkipReason() ?? (existsSync(kubeApiserverBinary()) ? false : `${kubeApiserverBinary()} is missing`);
const SA = "system:serviceaccount:kube-system:weft";

describe("deploy/weft.yaml on a real kube-apiserver", { skip }, () => {
  let api: KubeApiserver;
  const kubectl = (...args: string[]) => runStatus([kubectlBinary(), "--kubeconfig", api.kubeconfig, ...args]);
  before(async () => {
    api = await startKubeApiserver();
  });
  after(async () => {
    await api?.stop();
  });

  test("it applies (server-side validation and admission), and again without change", async () => {
    const dry = await kubectl("apply", "--dry-run=server", "-f", MANIFEST);
    assert.equal(dry.code, 0, dry.stderr);
    const r = await kubectl("apply", "-f", MANIFEST);
    assert.equal(r.code, 0, r.stderr);
    for (const kind of [
      "serviceaccount",
      "clusterrole",
      "clusterrolebinding",
      "role",
      "rolebinding",
      "configmap",
      "daemonset",
    ])
      assert.match(r.stdout, new RegExp(`^${kind}[^ ]*/weft(-config)? created$`, "m"), `${kind}: ${r.stdout}`);
    const again = await kubectl("apply", "-f", MANIFEST);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stdout, /configured|created/, "a second apply changes nothing");
  });

  test("the ServiceAccount may do what the agent does, and not more", async () => {
    const can = async (args: string[]) => (await kubectl("auth", "can-i", "--as", SA, ...args)).stdout.trim();
    const yes: string[][] = [
      ["watch", "nodes"],
      ["patch", "nodes"],
      ["patch", "nodes/status"],
      ["list", "pods", "--all-namespaces"],
      ["watch", "namespaces"],
      ["watch", "networkpolicies.networking.k8s.io", "--all-namespaces"],
      ["create", "leases.coordination.k8s.io", "-n", "kube-system"],
      ["update", "leases.coordination.k8s.io", "-n", "kube-system"],
      ["get", "configmaps/weft-config", "-n", "kube-system"],
    ];
    const no: string[][] = [
      ["get", "secrets", "-n", "kube-system"],
      ["delete", "nodes"],
      ["create", "nodes"],
      ["create", "pods", "-n", "default"],
      ["update", "leases.coordination.k8s.io", "-n", "kube-node-lease"],
      ["get", "configmaps/other", "-n", "kube-system"],
      ["update", "configmaps/weft-config", "-n", "kube-system"],
    ];
    for (const a of yes) assert.equal(await can(a), "yes", `weft may ${a.join(" ")}`);
    for (const a of no) assert.equal(await can(a), "no", `weft may not ${a.join(" ")}`);
  });
});
