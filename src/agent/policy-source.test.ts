// Where policies come from, for each store and what the environment configures: on a Kubernetes
// cluster the API server, so an etcd-store agent never enforces a stale or empty policy set.
import { test } from "node:test";
import assert from "node:assert/strict";
import { findKubeApi, kubeStoreConfig, PolicySourceError, resolvePolicySource } from "./policy-source.js";

const TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const inPod = { KUBERNETES_SERVICE_HOST: "10.96.0.1", HOME: "/root" };
const hasToken = (p: string) => p === TOKEN;
const noToken = () => false;

test("findKubeApi: --kubeconfig, then $KUBECONFIG, then in-cluster (host env and token both needed)", () => {
  assert.deepEqual(findKubeApi("/k", { KUBECONFIG: "/e" }, hasToken), { kubeconfig: "/k", how: "--kubeconfig" });
  assert.deepEqual(findKubeApi(undefined, { KUBECONFIG: "/e" }, hasToken), { kubeconfig: "/e", how: "$KUBECONFIG" });
  assert.deepEqual(findKubeApi(undefined, inPod, hasToken), { how: "in-cluster ServiceAccount" });
  assert.equal(findKubeApi(undefined, inPod, noToken), null);
  assert.equal(findKubeApi(undefined, { HOME: "/root" }, hasToken), null);
});

test("auto: etcd takes the API server whenever one is configured, its own objects without one", () => {
  const withApi = resolvePolicySource("etcd", "auto", { kubeconfig: "/k", how: "--kubeconfig" }, {}, noToken);
  assert.deepEqual(withApi.policyStore, { kind: "kubernetes", requestTimeoutMs: 3000, kubeconfig: "/k" });
  const pod = resolvePolicySource("etcd", "auto", findKubeApi(undefined, inPod, hasToken), inPod, hasToken);
  assert.deepEqual(pod.policyStore, { kind: "kubernetes", requestTimeoutMs: 3000 }, "in a pod: the ServiceAccount");
  assert.equal(resolvePolicySource("etcd", "auto", null).policyStore, undefined);
  assert.equal(resolvePolicySource("local", "auto", { kubeconfig: "/k", how: "$KUBECONFIG" }).policyStore, undefined);
  assert.equal(resolvePolicySource("kubernetes", "auto", { kubeconfig: "/k", how: "x" }).policyStore, undefined);
});

test("explicit: store stays (and says what it gives up); kubernetes without an API is an error", () => {
  const s = resolvePolicySource("etcd", "store", { kubeconfig: "/k", how: "--kubeconfig" });
  assert.equal(s.policyStore, undefined);
  assert.match(s.reason, /NOT enforced/);
  assert.throws(() => resolvePolicySource("etcd", "kubernetes", null), PolicySourceError);
  assert.ok(resolvePolicySource("local", "kubernetes", { kubeconfig: "/k", how: "--kubeconfig" }).policyStore);
});

test("kubeStoreConfig names the kubeconfig everywhere but in a pod", () => {
  const outside = kubeStoreConfig(undefined, { HOME: "/h" }, noToken) as { kubeconfig?: string };
  assert.match(outside.kubeconfig ?? "", /\/\.kube\/config$/, "as kubectl: ~/.kube/config");
  assert.deepEqual(kubeStoreConfig(undefined, { ...inPod, KUBECONFIG: "/e" }, hasToken).kind, "kubernetes");
  assert.equal(
    (kubeStoreConfig(undefined, { ...inPod, KUBECONFIG: "/e" }, hasToken) as { kubeconfig?: string }).kubeconfig,
    "/e",
  );
  assert.equal((kubeStoreConfig(undefined, inPod, hasToken) as { kubeconfig?: string }).kubeconfig, undefined);
});
