// The apiserver's real-node mode (for the lab's real kubelets and controller-manager), against the
// real kube-apiserver: ServiceAccount admission on, Node,RBAC authorization, extra static tokens as
// kubeconfigs, the service-account key and CA paths exposed. The default mode is covered by every
// test that starts an apiserver.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { KubeClient } from "../store/kubernetes/index.js";
import { kubeApiserverArgs, kubeApiserverBinary, startKubeApiserver, type KubeApiserver } from "./apiserver-process.js";

const BIN = kubeApiserverBinary();
const skip = existsSync(BIN) ? false : `${BIN} is missing: build it with \`bash scripts/kube-binaries.sh\``;

describe("kube-apiserver real-node mode", { skip }, () => {
  let api: KubeApiserver | undefined;
  const clients: KubeClient[] = [];
  after(async () => {
    for (const c of clients) c.close();
    await api?.stop();
  });

  test("flags: the default mode is unchanged; realNodes adds Node authorization, kubelet address types, SA admission", () => {
    const base = { dir: "/d", port: 1, etcdServers: ["http://127.0.0.1:2379"] };
    const def = kubeApiserverArgs(base);
    assert.equal(def[def.indexOf("--authorization-mode") + 1], "RBAC");
    assert.equal(def[def.indexOf("--disable-admission-plugins") + 1], "ServiceAccount");
    const real = kubeApiserverArgs({ ...base, realNodes: true });
    assert.equal(real[real.indexOf("--authorization-mode") + 1], "Node,RBAC");
    assert.equal(real[real.indexOf("--kubelet-preferred-address-types") + 1], "InternalIP,Hostname");
    assert.equal(real.includes("--disable-admission-plugins"), false);
    assert.equal(real[real.indexOf("--enable-admission-plugins") + 1], "NodeRestriction");
    assert.equal(def.includes("--enable-admission-plugins"), false);
    assert.equal(real[real.indexOf("--feature-gates") + 1], "IPv6DualStack=true");
  });

  test(
    "a kubelet's token registers its own Node and reads no secrets; the controller-manager's is admin; pods need their ServiceAccount",
    { timeout: 90_000 },
    async () => {
      api = await startKubeApiserver({
        realNodes: true,
        tokens: [
          { name: "node-a", user: "system:node:node-a", groups: ["system:nodes"] },
          { name: "controller-manager", user: "weft-controller-manager", groups: ["system:masters"] },
        ],
      });
      assert.match(readFileSync(api.saKeyFile, "utf8"), /PRIVATE KEY/);
      assert.match(readFileSync(api.caFile, "utf8"), /BEGIN CERTIFICATE/);
      const open = (file: string): KubeClient => {
        const c = KubeClient.fromFile(file);
        clients.push(c);
        return c;
      };
      const kubelet = open(api.kubeconfigs["node-a"]);
      const cm = open(api.kubeconfigs["controller-manager"]);
      await kubelet.request("POST", "/api/v1/nodes", {
        body: { apiVersion: "v1", kind: "Node", metadata: { name: "node-a" } },
      });
      await assert.rejects(kubelet.request("GET", "/api/v1/secrets"), /403/);
      // NodeRestriction: another node's Node is not a kubelet's to write.
      await cm.request("POST", "/api/v1/nodes", {
        body: { apiVersion: "v1", kind: "Node", metadata: { name: "node-b" } },
      });
      await assert.rejects(
        kubelet.request("PATCH", "/api/v1/nodes/node-b", {
          contentType: "application/merge-patch+json",
          body: { metadata: { labels: { by: "node-a" } } },
        }),
        /403/,
      );
      const nodes = await cm.request<{ items: Array<{ metadata: { name: string } }> }>("GET", "/api/v1/nodes");
      assert.deepEqual(
        nodes.items.map((n) => n.metadata.name),
        ["node-a", "node-b"],
      );
      // ServiceAccount admission is on: no "default" ServiceAccount (no controller-manager yet), no pod.
      await cm.request("POST", "/api/v1/namespaces", {
        body: { apiVersion: "v1", kind: "Namespace", metadata: { name: "t" } },
      });
      await assert.rejects(
        cm.request("POST", "/api/v1/namespaces/t/pods", {
          body: {
            apiVersion: "v1",
            kind: "Pod",
            metadata: { name: "p" },
            spec: { containers: [{ name: "c", image: "busybox" }] },
          },
        }),
        /serviceaccount "default" not found/,
      );
    },
  );
});
