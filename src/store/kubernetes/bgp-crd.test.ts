// The BGP objects in the Kubernetes store: the CustomResourceDefinitions and the ClusterRole rule
// of deploy/weft.yaml on a real kube-apiserver (RBAC on): the apiserver takes and serves the CRDs;
// the agent, with only the manifest's role, lists and watches both kinds and may not write them; an
// object an admin stores reaches the agent, and the CRD's schema refuses an AS out of range.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { collector, waitFor } from "../cases.js";
import { KubeClient, openKubernetesStore, type KubernetesStore } from "./index.js";
import { startKubeApiserver, kubeApiserverBinary, type KubeApiserver } from "../../lab/apiserver-process.js";
import type { Json } from "./client.js";
import type { StoredObject } from "../types.js";

const BIN = kubeApiserverBinary();
const skip = existsSync(BIN) ? false : `${BIN} is missing: build it with \`bash scripts/kube-binaries.sh\``;
const MANIFEST = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "deploy", "weft.yaml");
const docs = (): Json[] =>
  parseAllDocuments(readFileSync(MANIFEST, "utf8"))
    .map((d) => d.toJS() as Json | null)
    .filter((d): d is Json => d !== null);

describe("BGP objects as CRDs in the Kubernetes store", { skip }, () => {
  let api: KubeApiserver | undefined;
  const stores: KubernetesStore[] = [];
  const clients: KubeClient[] = [];
  after(async () => {
    await Promise.allSettled(stores.map((s) => s.close()));
    for (const c of clients) c.close();
    await api?.stop();
  });

  test(
    "the CRDs are served; the agent's role lists and watches BGPConfiguration and BGPPeer, cannot write them",
    { timeout: 120_000 },
    async () => {
      api = await startKubeApiserver({
        tokens: [
          {
            name: "agent",
            user: "system:serviceaccount:kube-system:weft",
            groups: ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
          },
        ],
      });
      const admin = KubeClient.fromFile(api.kubeconfig);
      clients.push(admin);
      for (const d of docs().filter((d) => d.kind === "CustomResourceDefinition"))
        await admin.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", { body: d });
      for (const d of docs().filter((d) => String(d.apiVersion).startsWith("rbac.authorization.k8s.io/"))) {
        const ns = (d.metadata as { namespace?: string }).namespace;
        const plural = `${String(d.kind).toLowerCase()}s`;
        await admin.request("POST", `/apis/rbac.authorization.k8s.io/v1${ns ? `/namespaces/${ns}` : ""}/${plural}`, {
          body: d,
        });
      }
      await waitFor("the CRDs served", async () =>
        admin
          .request("GET", "/apis/weft.dev/v1/bgppeers")
          .then(() => admin.request("GET", "/apis/weft.dev/v1/bgpconfigurations"))
          .then(
            () => true,
            () => undefined,
          ),
      );

      const store = openKubernetesStore({ kubeconfig: api.kubeconfig, log: () => undefined });
      const agent = openKubernetesStore({ kubeconfig: api.kubeconfigs.agent, log: () => undefined });
      stores.push(store, agent);
      const seen = collector<StoredObject>();
      const watches = ["BGPConfiguration", "BGPPeer"].map((k) => agent.objects.watch(k, seen.listener));
      await Promise.all(watches.map((w) => w.ready));

      // Both empty, listed and watched with the manifest's role alone.
      assert.deepEqual(await agent.objects.list("BGPPeer"), []);
      assert.deepEqual(await agent.objects.list("BGPConfiguration"), []);
      // The agent may not write them (refused before the body is read).
      await assert.rejects(
        agent.objects.create({
          apiVersion: "weft.dev/v1",
          kind: "BGPPeer",
          metadata: { name: "x" },
          spec: { peerAddress: "10.1.0.2", asNumber: 65001 },
        }),
        (e: unknown) => /403|forbidden/i.test(String(e)),
      );
      // An admin stores one (as `weft apply` does); the agent lists it and its watch delivers it.
      const peer = {
        apiVersion: "weft.dev/v1",
        kind: "BGPPeer",
        metadata: { name: "tor-r1" },
        spec: { peerAddress: "10.1.0.1", asNumber: 65001, nodeSelector: "rack=r1", bfd: true },
      };
      await store.objects.create(peer);
      const listed = await agent.objects.list("BGPPeer");
      assert.deepEqual(
        listed.map((o) => [o.metadata.name, (o as { spec?: unknown }).spec]),
        [["tor-r1", peer.spec]],
      );
      await waitFor("the agent's watch delivers the BGPPeer", async () =>
        seen.events.some((e) => e.type !== "removed" && JSON.stringify(e).includes("tor-r1")) ? true : undefined,
      );
      // The CRD's schema is a second line behind weft's own checks: an AS out of range is refused by the apiserver.
      await assert.rejects(
        store.objects.create({ ...peer, metadata: { name: "bad-as" }, spec: { ...peer.spec, asNumber: 4294967296 } }),
        (e: unknown) => /asNumber|4294967295|Invalid/i.test(String(e)),
      );
      assert.deepEqual(
        (await agent.objects.list("BGPPeer")).map((o) => o.metadata.name),
        ["tor-r1"],
      );
      await Promise.all(watches.map((w) => w.close()));
    },
  );
});
