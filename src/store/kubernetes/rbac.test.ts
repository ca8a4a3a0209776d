// weft's agent as a pod would run it: in-cluster credentials (a real ServiceAccount token from the
// TokenRequest API, ca.crt, KUBERNETES_SERVICE_HOST/PORT; WEFT_SERVICEACCOUNT_DIR stands in for
// /var/run/secrets/kubernetes.io/serviceaccount) and ONLY the RBAC of deploy/weft.yaml (ClusterRole + Role),
// against a real kube-apiserver with RBAC authorization. Every store operation the agent uses must
// pass with that role: nothing more is needed.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { collector, waitFor } from "../cases.js";
import { KubeClient, openKubernetesStore, type KubernetesStore } from "./index.js";
import { startKubeApiserver, kubeApiserverBinary, type KubeApiserver } from "../../lab/apiserver-process.js";
import type { Json } from "./client.js";
import { nodePath, settingsPath, SETTINGS_KEY, SETTINGS_NAME } from "./layout.js";
import { UnavailableError, type NodeInfo, type StoredObject } from "../types.js";

const BIN = kubeApiserverBinary();
const skip = existsSync(BIN) ? false : `${BIN} is missing: build it with \`bash scripts/kube-binaries.sh\``;
const MANIFEST = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "deploy", "weft.yaml");
const RBAC = "/apis/rbac.authorization.k8s.io/v1";

/** The RBAC documents of deploy/weft.yaml (ClusterRole, Role and their bindings), as kubectl applies them. */
function rbacDocuments(): Json[] {
  const docs = parseAllDocuments(readFileSync(MANIFEST, "utf8")).map((d) => d.toJS() as Json | null);
  const rbac = docs.filter(
    (d): d is Json =>
      d !== null && typeof d.apiVersion === "string" && d.apiVersion.startsWith("rbac.authorization.k8s.io/"),
  );
  assert.ok(
    rbac.some((d) => d.kind === "ClusterRole"),
    `${MANIFEST} has no ClusterRole`,
  );
  return rbac;
}

const rbacPath = (d: Json): string => {
  const ns = (d.metadata as { namespace?: string }).namespace;
  const plural = `${String(d.kind).toLowerCase()}s`;
  return ns ? `${RBAC}/namespaces/${ns}/${plural}` : `${RBAC}/${plural}`;
};

describe("the agent in a pod: in-cluster ServiceAccount with only deploy/weft.yaml's RBAC", { skip }, () => {
  let api: KubeApiserver | undefined;
  let saDir: string | undefined;
  const stores: KubernetesStore[] = [];
  const admins: KubeClient[] = [];
  after(async () => {
    await Promise.allSettled(stores.map((s) => s.close()));
    for (const c of admins) c.close();
    await api?.stop();
    if (saDir) rmSync(saDir, { recursive: true, force: true });
  });

  test(
    "registration, renewal, claims, podCIDRs from the Node, watches of nodes, pods, namespaces and networkpolicies, settings: all with the manifest's roles alone",
    { timeout: 120_000 },
    async () => {
      api = await startKubeApiserver();
      const admin = KubeClient.fromFile(api.kubeconfig);
      admins.push(admin);
      // The manifest's objects, as kubectl apply would make them.
      await admin.request("POST", "/api/v1/namespaces/kube-system/serviceaccounts", {
        body: { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "weft", namespace: "kube-system" } },
      });
      for (const d of rbacDocuments()) await admin.request("POST", rbacPath(d), { body: d });
      // A real ServiceAccount token (what the kubelet mounts into the pod), from the TokenRequest API.
      const tr = await admin.request<Json>("POST", "/api/v1/namespaces/kube-system/serviceaccounts/weft/token", {
        body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
      });
      const token = (tr.status as { token: string }).token;
      saDir = mkdtempSync(join(tmpdir(), "weft-sa-"));
      copyFileSync(api.caFile, join(saDir, "ca.crt"));
      writeFileSync(join(saDir, "namespace"), "kube-system");
      // First a token the apiserver does not know (a rotation pending): the store must pick up the new file.
      writeFileSync(join(saDir, "token"), "not-a-valid-token", { mode: 0o600 });
      const env = {
        KUBERNETES_SERVICE_HOST: "127.0.0.1",
        KUBERNETES_SERVICE_PORT: new URL(api.url).port,
        WEFT_SERVICEACCOUNT_DIR: saDir,
        PATH: process.env.PATH,
      };
      const inPod = (): KubernetesStore => {
        const s = openKubernetesStore({ env, requestTimeoutMs: 5000, podCIDRWaitMs: 30_000, log: () => undefined });
        stores.push(s);
        return s;
      };
      const a = inPod();
      assert.match(a.description, /in-cluster ServiceAccount/);
      await assert.rejects(
        a.getClusterSettings(),
        (e: unknown) => e instanceof UnavailableError && /refused weft's request \(401/.test(e.message),
      );
      writeFileSync(join(saDir, "token"), token, { mode: 0o600 });
      assert.equal(await a.getClusterSettings(), undefined, "the rotated token is read (no ConfigMap yet)");

      // The admin (or the manifest's ConfigMap) sets the cluster up; the agent only reads it.
      await admin.request("POST", settingsPath(), {
        body: {
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: SETTINGS_NAME, namespace: "kube-system" },
          data: {
            [SETTINGS_KEY]: JSON.stringify({ clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"], backend: "vxlan" }),
          },
        },
      });
      assert.deepEqual((await a.getClusterSettings())?.clusterCIDRs, ["10.244.0.0/16", "fd00:10:244::/48"]);

      // Watches the agent keeps: peers, and what policy enforcement reads.
      const b = inPod();
      const nodes = collector<NodeInfo>();
      const wn = b.watchNodes(nodes.listener);
      const objs = collector<StoredObject>();
      const wo = (["Namespace", "Pod", "NetworkPolicy"] as const).map((k) => b.objects.watch(k, objs.listener));
      await Promise.all([wn.ready, ...wo.map((w) => w.ready)]);

      // podCIDRSource weft on Nodes a kubelet made (the manifest grants no Node create: the agent patches).
      for (const n of ["rb-1", "rb-2"])
        await admin.request("POST", nodePath(), { body: { apiVersion: "v1", kind: "Node", metadata: { name: n } } });
      const l1 = await a.registerNode({ name: "rb-1", addresses: ["192.0.2.101"] }, { ttlSeconds: 2 });
      const l2 = await inPod().registerNode({ name: "rb-2", addresses: ["192.0.2.102"] }, { ttlSeconds: 2 });
      assert.equal(l2.node.podCIDRs.length, 2);
      await waitFor(
        "both nodes in the watch",
        () =>
          ["rb-1", "rb-2"].every((n) => nodes.events.some((e) => e.type === "added" && e.object.name === n)) ||
          undefined,
      );
      const states: string[] = [];
      l1.onStateChange((s) => states.push(s.state));
      // Renewals (every TTL/3) go through: no lost lease over a few rounds.
      await new Promise((r) => setTimeout(r, 3000));
      assert.deepEqual(states, [], "renewals failed with the manifest's roles");
      await l1.update({ backendData: { vtepMAC: "aa:bb:cc:00:01:01" } });
      assert.deepEqual((await b.getNode("rb-1"))?.backendData, { vtepMAC: "aa:bb:cc:00:01:01" });
      assert.equal((await b.listSubnetClaims()).length, 4);
      assert.deepEqual(
        (await b.listNodes()).map((n) => n.name),
        ["rb-1", "rb-2"],
      );

      // Policy objects made by the admin (kubectl apply) reach the agent's watches; it reads a pod.
      await admin.request("POST", "/api/v1/namespaces", {
        body: { apiVersion: "v1", kind: "Namespace", metadata: { name: "team" } },
      });
      await admin.request("POST", "/api/v1/namespaces/team/pods", {
        body: {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "web", namespace: "team" },
          spec: { containers: [{ name: "c", image: "busybox" }] },
        },
      });
      await admin.request("POST", "/apis/networking.k8s.io/v1/namespaces/team/networkpolicies", {
        body: {
          apiVersion: "networking.k8s.io/v1",
          kind: "NetworkPolicy",
          metadata: { name: "deny", namespace: "team" },
          spec: { podSelector: {}, policyTypes: ["Ingress"] },
        },
      });
      for (const kind of ["Namespace", "Pod", "NetworkPolicy"])
        await waitFor(`${kind} in the agent's watch`, () =>
          objs.events.find(
            (e) =>
              e.object.kind === kind &&
              e.object.metadata.namespace !== "kube-system" &&
              (e.object.metadata.name === "team" || e.object.metadata.namespace === "team"),
          ),
        );
      assert.equal((await b.objects.get({ kind: "Pod", namespace: "team", name: "web" })).metadata.name, "web");

      // podCIDRSource node: the settings say so; kube-controller-manager (the admin) sets podCIDRs.
      await l1.release();
      await l2.release();
      await admin.request("PATCH", settingsPath(SETTINGS_NAME), {
        contentType: "application/merge-patch+json",
        body: {
          data: {
            [SETTINGS_KEY]: JSON.stringify({
              clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/48"],
              backend: "vxlan",
              podCIDRSource: "node",
            }),
          },
        },
      });
      await admin.request("POST", nodePath(), {
        body: { apiVersion: "v1", kind: "Node", metadata: { name: "rb-3" } },
      });
      const l3p = inPod().registerNode({ name: "rb-3", addresses: ["192.0.2.103"] }, { ttlSeconds: 2 });
      await admin.request("PATCH", nodePath("rb-3"), {
        contentType: "application/merge-patch+json",
        body: { spec: { podCIDR: "10.244.99.0/24", podCIDRs: ["10.244.99.0/24", "fd00:10:244:99::/64"] } },
      });
      const l3 = await l3p;
      assert.deepEqual(l3.node.podCIDRs, ["10.244.99.0/24", "fd00:10:244:99::/64"]);
      await waitFor("rb-3 in the watch", () =>
        nodes.events.find((e) => e.type === "added" && e.object.name === "rb-3"),
      );
      await l3.release();
      // `weft node delete` with the same role: weft's lease, claims and annotations go, the Node stays.
      await b.removeNode("rb-1");
      assert.ok(await admin.request("GET", nodePath("rb-1")));

      // And the role is not more than that: the agent cannot delete a Node.
      await assert.rejects(
        b.client.request("DELETE", nodePath("rb-2")),
        (e: unknown) => e instanceof UnavailableError && /403/.test(e.message),
      );
      await wn.close();
      await Promise.all(wo.map((w) => w.close()));
    },
  );
});
