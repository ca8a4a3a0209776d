// weft installed as users install it, on real nodes: `kubectl apply -f deploy/weft.yaml` on a
// `weft lab up --kubelet real` lab (containerd CRI + kubelet 1.20 per node). The nodes are NotReady
// until weft's DaemonSet installs its conflist; then pods placed by the scheduler get weft's
// addresses from their node's podCIDR and reach each other across nodes (TCP and UDP matrix), and
// `lab down` leaves nothing. The only change to the manifest is the lab's: the agent's image tag
// (the one scripts/image.sh built from this checkout) and the API server's address (no kube-proxy
// here, so KUBERNETES_SERVICE_HOST/PORT point at the node's forwarder on 127.0.0.1:6443).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { imagesDir } from "../../lab/realnode/images.js";
import { NODE_API_PORT } from "../../lab/api-proxy.js";
import { ROOT } from "../../testlib/lab.js";
import { inCidr } from "../cluster/fixture.js";
import { hostSnapshot, RealLab, requireComponents, skipReason, type HostSnapshot } from "./fixture.js";

const skip = skipReason();
const PODS = [
  { name: "a", node: "n1" },
  { name: "b", node: "n2" },
  { name: "c", node: "n2" },
];

/** The name of weft's image among the archives every node imported (scripts/image.sh's list). */
function weftImage(): string {
  const dir = imagesDir();
  const list = JSON.parse(readFileSync(join(dir, "images.json"), "utf8")) as { images: Array<{ name: string }> };
  const img = list.images.find((i) => /^localhost\/weft\/weft:/.test(i.name));
  if (!img) throw new Error(`${dir}/images.json lists no localhost/weft/weft image: run scripts/image.sh`);
  return img.name;
}

interface Container {
  image?: string;
  env?: Array<{ name: string; value?: string }>;
}

/** deploy/weft.yaml with the lab's image tag and API server address. */
function renderManifest(image: string): string {
  const docs = parseAllDocuments(readFileSync(join(ROOT, "deploy", "weft.yaml"), "utf8")).map(
    (d) => d.toJS() as { kind?: string; spec?: { template?: { spec?: Record<string, Container[]> } } },
  );
  for (const d of docs) {
    if (d?.kind !== "DaemonSet") continue;
    const spec = d.spec!.template!.spec!;
    for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
      if (c.image?.startsWith("localhost/weft/weft:")) c.image = image;
    }
    for (const c of spec.containers ?? []) {
      const env = (c.env ?? []).filter((e) => !e.name.startsWith("KUBERNETES_SERVICE_"));
      env.push(
        { name: "KUBERNETES_SERVICE_HOST", value: "127.0.0.1" },
        { name: "KUBERNETES_SERVICE_PORT", value: String(NODE_API_PORT) },
      );
      c.env = env;
    }
  }
  return docs
    .filter((d) => d)
    .map((d) => stringify(d))
    .join("---\n");
}

function podManifest(name: string, node: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", labels: { app: name } },
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

describe("kubectl apply -f deploy/weft.yaml on 2 real nodes", { skip, timeout: 900_000 }, () => {
  const lab = new RealLab();
  let before0: HostSnapshot;
  let downDone = false;

  before(async () => {
    requireComponents();
    if (!existsSync(join(ROOT, "deploy", "weft.yaml"))) throw new Error("deploy/weft.yaml is missing");
    before0 = hostSnapshot();
    await lab.up(["--nodes", "2"]);
  });
  after(async () => {
    if (!downDone) await lab.down();
  });

  test("nodes are NotReady until weft's DaemonSet runs, then Ready", async () => {
    const nodes = await lab.nodes();
    assert.equal(nodes.length, 2);
    await lab.kubectl(["apply", "-f", "-"], renderManifest(weftImage()));
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
      const cidr = nodes.find((n) => n.metadata.name === p.spec.nodeName)!.spec!.podCIDRs![0];
      assert.ok(inCidr(p.status.podIP!, cidr), `${p.metadata.name} ${p.status.podIP} in ${cidr}`);
    }
    for (const args of [
      ["--port", "80"],
      ["--port", "53", "--protocol", "UDP"],
    ]) {
      const m = await lab.cli(["matrix", ...args, "-o", "json", "--timeout-ms", "3000"]);
      assert.equal(m.code, 0, m.stderr);
      const matrix = (JSON.parse(m.stdout) as { matrix: Record<string, Record<string, boolean>> }).matrix;
      const keys = PODS.map((p) => `default/${p.name}`);
      assert.deepEqual(Object.keys(matrix).sort(), keys);
      for (const a of keys) for (const b of keys) assert.equal(matrix[a][b], true, `${args.join(" ")}: ${a} -> ${b}`);
    }
  });

  test("lab down leaves nothing and restores the sysctls", async () => {
    const d = await lab.down();
    downDone = true;
    assert.equal(d.code, 0, d.stderr);
    assert.deepEqual(await lab.leftovers(before0), []);
  });
});
