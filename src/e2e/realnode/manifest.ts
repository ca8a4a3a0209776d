// What the real-node tests apply: deploy/weft.yaml with the lab's image tag and API server address
// (no kube-proxy here, so agent.json's apiServer is the node's forwarder on 127.0.0.1:6443), and
// plain pods pinned to a node.
import { copyFileSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { imagesDir } from "../../lab/realnode/images.js";
import { NODE_API_PORT } from "../../lab/api-proxy.js";
import { ROOT } from "../../testlib/lab.js";

/** The name of weft's image among the archives every node imported (scripts/image.sh's list). */
export function weftImage(): string {
  const dir = imagesDir();
  const list = JSON.parse(readFileSync(join(dir, "images.json"), "utf8")) as { images: Array<{ name: string }> };
  const img = list.images.find((i) => /^localhost\/weft\/weft:/.test(i.name));
  if (!img) throw new Error(`${dir}/images.json lists no localhost/weft/weft image: run scripts/image.sh`);
  return img.name;
}

interface Container {
  image?: string;
}

/**
 * deploy/weft.yaml with the lab's image tag and API server address (and its DaemonSet held to some
 * nodes). The address goes where a user without kube-proxy puts it: agent.json's "apiServer" in the
 * ConfigMap (each node's forwarder to the API server on its own 127.0.0.1:6443). clusterCIDRs, when
 * given, replace settings.json's (as a user of a dual-stack cluster sets both families there).
 */
export function renderManifest(
  image: string,
  nodeSelector?: Record<string, string>,
  clusterCIDRs?: readonly string[],
): string {
  const docs = parseAllDocuments(readFileSync(join(ROOT, "deploy", "weft.yaml"), "utf8")).map(
    (d) =>
      d.toJS() as {
        kind?: string;
        metadata?: { name?: string };
        data?: Record<string, string>;
        spec?: { template?: { spec?: Record<string, Container[]> } };
      },
  );
  for (const d of docs) {
    if (d?.kind === "ConfigMap" && d.metadata?.name === "weft-config" && d.data?.["agent.json"] !== undefined) {
      const agent = JSON.parse(d.data["agent.json"]) as Record<string, unknown>;
      d.data["agent.json"] = JSON.stringify({ ...agent, apiServer: `127.0.0.1:${NODE_API_PORT}` }, null, 2);
      if (clusterCIDRs && d.data["settings.json"] !== undefined) {
        const settings = JSON.parse(d.data["settings.json"]) as Record<string, unknown>;
        d.data["settings.json"] = JSON.stringify({ ...settings, clusterCIDRs: [...clusterCIDRs] }, null, 2);
      }
    }
    if (d?.kind !== "DaemonSet") continue;
    const spec = d.spec!.template!.spec!;
    if (nodeSelector) (spec as Record<string, unknown>).nodeSelector = nodeSelector;
    for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
      if (c.image?.startsWith("localhost/weft/weft:")) c.image = image;
    }
  }
  return docs
    .filter((d) => d)
    .map((d) => stringify(d))
    .join("---\n");
}

/** A lab pod server pod (80/TCP, 53/UDP) on one node. */
export function podManifest(
  name: string,
  node: string,
  namespace = "default",
  labels: Record<string, string> = {},
): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: { app: name, ...labels } },
    spec: {
      nodeSelector: { "kubernetes.io/hostname": node },
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: "main",
          image: "localhost/weft/lab-pod:1",
          imagePullPolicy: "Never",
          args: ["80/TCP", "53/UDP"],
          ports: [{ containerPort: 80 }, { containerPort: 53, protocol: "UDP" }],
        },
      ],
    },
  });
}

/** The reference plugins' conflist for one node: a bridge, host-local IPAM from the node's podCIDRs. */
function bridgeConflist(podCidrs: string[]): string {
  return JSON.stringify({
    cniVersion: "0.4.0",
    name: "lab-bridge",
    plugins: [
      {
        type: "bridge",
        bridge: "cni0",
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: "host-local",
          ranges: podCidrs.map((c) => [{ subnet: c }]),
          routes: podCidrs.map((c) => ({ dst: c.includes(":") ? "::/0" : "0.0.0.0/0" })),
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  });
}

/**
 * Installs the reference bridge + host-local plugins as a real node's CNI (binaries from
 * /usr/lib/cni, then the conflist, atomically, as a CNI installer writes it: containerd watches the dir).
 */
export function installBridgeCni(
  node: { cniBinDir?: string; cniConfDir?: string },
  podCidrs: string[],
  file = "10-bridge.conflist",
): void {
  const bin = node.cniBinDir;
  const conf = node.cniConfDir;
  if (!bin || !conf) throw new Error("the node has no CNI dirs (not a real node?)");
  for (const p of ["bridge", "host-local"]) copyFileSync(join("/usr/lib/cni", p), join(bin, p));
  const tmp = join(conf, `.${file}.tmp`);
  writeFileSync(tmp, bridgeConflist(podCidrs));
  renameSync(tmp, join(conf, file));
}
