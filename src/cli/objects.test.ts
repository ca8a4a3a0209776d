// `weft apply/get/label/delete` as a user runs them: bin/weft as a child process against a local
// store in a temporary --state-dir, and against a real etcd on loopback. What the commands wrote
// is checked both through the CLI and through the store API (the agents' view).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import etcd3 from "etcd3";
import { openStore } from "../store/index.js";
import { ETCD_BINARY, startEtcd, type EtcdCluster } from "../lab/etcd-process.js";
import type { ClusterStore, StoredObject } from "../store/types.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The CLI under test (WEFT_TEST_BIN: another build of it). */
const CLI = process.env.WEFT_TEST_BIN ?? join(root, "bin", "weft");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function weftRun(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "",
      stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}

interface Backend {
  name: string;
  skip: string | false;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** A fresh, empty store for one test: CLI flags and an API handle on the same store. */
  fresh(): Promise<{ flags: string[]; open(): ClusterStore; done(): Promise<void> }>;
}

function localBackend(): Backend {
  return {
    name: "local store",
    skip: false,
    setup: async () => undefined,
    teardown: async () => undefined,
    fresh: async () => {
      const dir = mkdtempSync(join(tmpdir(), "wt-objects-"));
      const opened: ClusterStore[] = [];
      return {
        flags: ["--store", "local", "--state-dir", dir],
        open: () => {
          const s = openStore({ kind: "local", stateDir: dir });
          opened.push(s);
          return s;
        },
        done: async () => {
          await Promise.allSettled(opened.map((s) => s.close()));
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

function etcdBackend(): Backend {
  let etcd: EtcdCluster | undefined;
  return {
    name: "etcd",
    skip: existsSync(ETCD_BINARY) ? false : `${ETCD_BINARY} is missing (Debian package etcd-server)`,
    setup: async () => {
      etcd = await startEtcd({ members: 1 });
    },
    teardown: async () => {
      await etcd?.stop();
    },
    fresh: async () => {
      const endpoints = etcd!.endpoints;
      // The CLI uses the default key prefix (/weft): empty it so every test starts from nothing.
      const client = new etcd3.Etcd3({ hosts: endpoints });
      try {
        await client.delete().prefix("/weft/");
      } finally {
        client.close();
      }
      const opened: ClusterStore[] = [];
      return {
        flags: ["--store", "etcd", "--etcd-endpoints", endpoints.join(",")],
        open: () => {
          const s = openStore({ kind: "etcd", endpoints, requestTimeoutMs: 5000 });
          opened.push(s);
          return s;
        },
        done: async () => {
          await Promise.allSettled(opened.map((s) => s.close()));
        },
      };
    },
  };
}

const MANIFEST = `apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels: {team: a}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: team-a
  labels: {app: web}
spec:
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: team-a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {}}], ports: [{port: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: loner}
spec: {containers: [{name: c}]}
`;

const LIST = JSON.stringify({
  kind: "List",
  apiVersion: "v1",
  items: [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "team-b" } },
    {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "db", namespace: "team-b", labels: { app: "db" } },
      spec: { containers: [{ name: "c", ports: [{ containerPort: 5432, name: "pg" }] }] },
    },
  ],
});

const podYaml = (labels: string, port: number): string => `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a, labels: {${labels}}}
spec:
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: ${port}}]
`;

function suite(b: Backend): void {
  describe(`weft apply/get/label/delete (${b.name})`, { skip: b.skip }, () => {
    before(() => b.setup());
    after(() => b.teardown());

    let cur: Awaited<ReturnType<Backend["fresh"]>>;
    const weft = (args: string[], input?: string): Promise<Run> => weftRun([...args, ...cur.flags], input);
    /** Runs and expects exit 0; returns stdout. */
    const ok = async (args: string[], input?: string): Promise<string> => {
      const r = await weft(args, input);
      assert.equal(r.code, 0, `weft ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
      return r.stdout;
    };
    /** Runs and expects failure with a one-line error containing each fragment. */
    const fails = async (args: string[], fragments: string[], input?: string): Promise<Run> => {
      const r = await weft(args, input);
      assert.notEqual(r.code, 0, `weft ${args.join(" ")} should have failed; stdout: ${r.stdout}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `one error line expected, got:\n${r.stderr}`);
      for (const f of fragments) assert.ok(lines[0].includes(f), `error "${lines[0]}" does not mention ${f}`);
      return r;
    };
    const json = async (args: string[]): Promise<StoredObject & { items: StoredObject[] }> =>
      JSON.parse(await ok([...args, "-o", "json"])) as StoredObject & { items: StoredObject[] };

    const withFresh = (name: string, fn: () => Promise<void>, timeout = 120_000): void => {
      test(name, { timeout }, async () => {
        cur = await b.fresh();
        try {
          await fn();
        } finally {
          await cur.done();
        }
      });
    };

    withFresh("apply a multi-document YAML and a List; get as JSON, YAML and tables; apply again", async () => {
      assert.equal(
        await ok(["apply", "-f", "-"], MANIFEST),
        [
          "namespace/team-a created",
          "pod/web created",
          "networkpolicy.networking.k8s.io/allow-web created",
          "pod/loner created",
          "",
        ].join("\n"),
      );
      assert.equal(await ok(["apply", "-f", "-"], LIST), "namespace/team-b created\npod/db created\n");

      const nsList = await json(["get", "namespaces"]);
      assert.equal(nsList.kind, "List");
      assert.equal(nsList.apiVersion, "v1");
      assert.deepEqual(
        nsList.items.map((n) => n.metadata.name),
        ["default", "team-a", "team-b"],
        "the default namespace exists as in Kubernetes",
      );
      for (const n of nsList.items) assert.equal(n.metadata.labels?.["kubernetes.io/metadata.name"], n.metadata.name);
      assert.equal(nsList.items[1].metadata.labels?.team, "a");

      const pod = await json(["get", "pod", "web", "-n", "team-a"]);
      assert.equal(pod.kind, "Pod");
      assert.equal(pod.metadata.namespace, "team-a");
      assert.match(pod.metadata.uid, /^[0-9a-f-]{36}$/);
      assert.equal(
        (pod.spec as { containers: Array<{ ports: Array<{ protocol: string }> }> }).containers[0].ports[0].protocol,
        "TCP",
        "port protocol defaulted",
      );
      assert.equal((pod.status as { phase: string }).phase, "Pending");
      assert.equal((await json(["get", "po", "-n", "default"])).items.map((p) => p.metadata.name).join(), "loner");
      const all = await json(["get", "PODS", "-A"]);
      assert.deepEqual(
        all.items.map((p) => `${p.metadata.namespace}/${p.metadata.name}`),
        ["default/loner", "team-a/web", "team-b/db"],
      );

      const np = await ok(["get", "netpol", "allow-web", "-n", "team-a", "-o", "yaml"]);
      assert.match(np, /^apiVersion: networking\.k8s\.io\/v1\nkind: NetworkPolicy\n/);
      assert.match(np, /policyTypes:\n\s+- Ingress/, "policyTypes defaulted as the API server does");

      const table = (await ok(["get", "pods", "-A", "-o", "wide"])).trimEnd().split("\n");
      assert.deepEqual(table[0].split(/\s+/), [
        "NAMESPACE",
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
      ]);
      assert.deepEqual(table[2].split(/\s+/).slice(0, 5), ["team-a", "web", "0/1", "Pending", "0"]);
      assert.equal(table.length, 4);
      const nsTable = (await ok(["get", "ns"])).trimEnd().split("\n");
      assert.deepEqual(nsTable[0].split(/\s+/), ["NAME", "STATUS", "AGE"]);
      assert.match(nsTable[2], /^team-a\s+Active\s+\d+s$/);
      assert.match(
        await ok(["get", "networkpolicies.networking.k8s.io", "-n", "team-a"]),
        /^NAME\s+POD-SELECTOR\s+AGE\nallow-web\s+app=web\s+\d+s\n$/,
      );
      assert.equal(
        await ok(["get", "pod/web", "netpol/allow-web", "-n", "team-a", "-o", "name"]),
        "pod/web\nnetworkpolicy.networking.k8s.io/allow-web\n",
      );

      const rv = pod.metadata.resourceVersion;
      assert.equal(
        await ok(["apply", "-f", "-"], MANIFEST),
        [
          "namespace/team-a unchanged",
          "pod/web unchanged",
          "networkpolicy.networking.k8s.io/allow-web unchanged",
          "pod/loner unchanged",
          "",
        ].join("\n"),
      );
      assert.equal(
        (await json(["get", "pod", "web", "-n", "team-a"])).metadata.resourceVersion,
        rv,
        "unchanged writes nothing",
      );
      assert.equal(
        await ok(["apply", "-f", "-"], MANIFEST.replace("labels: {team: a}", "labels: {team: b}")),
        [
          "namespace/team-a configured",
          "pod/web unchanged",
          "networkpolicy.networking.k8s.io/allow-web unchanged",
          "pod/loner unchanged",
          "",
        ].join("\n"),
      );
      const ns = await json(["get", "ns", "team-a"]);
      assert.deepEqual(ns.metadata.labels, { team: "b", "kubernetes.io/metadata.name": "team-a" });
      assert.equal(ns.metadata.uid, nsList.items[1].metadata.uid, "replaced in place: same uid");

      // A manifest file with the same objects behaves like stdin.
      const dir = mkdtempSync(join(tmpdir(), "wt-objects-f-"));
      try {
        writeFileSync(join(dir, "list.json"), LIST);
        assert.equal(
          await ok(["apply", "-f", join(dir, "list.json")]),
          "namespace/team-b unchanged\npod/db unchanged\n",
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    withFresh("a Pod's in-place update keeps uid, node and address; a changed spec is rejected", async () => {
      await ok(["apply", "-f", "-"], MANIFEST);
      // What the lab's scheduler and kubelet do: bind to a node, then report the pod's address.
      const store = cur.open();
      const stored = await store.objects.get({ kind: "Pod", namespace: "team-a", name: "web" });
      await store.objects.apply({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { ...stored.metadata },
        spec: { ...stored.spec, nodeName: "node-1" },
      });
      await store.objects.updateStatus(
        { kind: "Pod", namespace: "team-a", name: "web" },
        { phase: "Running", podIP: "10.244.1.5", podIPs: [{ ip: "10.244.1.5" }], hostIP: "192.168.50.11" },
      );

      assert.equal(await ok(["apply", "-f", "-"], podYaml("app: web, tier: fe", 80)), "pod/web configured\n");
      const after1 = await json(["get", "pod", "web", "-n", "team-a"]);
      assert.equal(after1.metadata.uid, stored.metadata.uid, "same pod");
      assert.deepEqual(after1.metadata.labels, { app: "web", tier: "fe" });
      assert.equal((after1.spec as { nodeName?: string }).nodeName, "node-1", "the binding is kept");
      assert.equal((after1.status as { podIP?: string }).podIP, "10.244.1.5", "same address");
      assert.match(
        await ok(["get", "pod", "web", "-n", "team-a", "-o", "wide"]),
        /web\s+1\/1\s+Running\s+0\s+\S+\s+10\.244\.1\.5\s+node-1\n$/,
      );

      const r = await fails(
        ["apply", "-f", "-"],
        ['Pod "web" is invalid', "Forbidden", "spec.containers[0].ports[0].containerPort"],
        podYaml("app: web", 8080),
      );
      assert.equal(r.stdout, "");
      const after2 = await json(["get", "pod", "web", "-n", "team-a"]);
      assert.equal(after2.metadata.resourceVersion, after1.metadata.resourceVersion, "nothing written");
      // Naming another node is a spec change too.
      await fails(
        ["apply", "-f", "-"],
        ["Forbidden", "spec.nodeName"],
        podYaml("app: web", 80).replace("spec:\n", "spec:\n  nodeName: node-2\n"),
      );
      // Delete and re-create is the way: a new pod (new uid), unbound.
      assert.equal(await ok(["delete", "pod", "web", "-n", "team-a"]), 'pod "web" deleted\n');
      assert.equal(await ok(["apply", "-f", "-"], podYaml("app: web", 8080)), "pod/web created\n");
      const fresh = await json(["get", "pod", "web", "-n", "team-a"]);
      assert.notEqual(fresh.metadata.uid, stored.metadata.uid);
    });

    withFresh("label: add, overwrite only with --overwrite, remove", async () => {
      await ok(["apply", "-f", "-"], MANIFEST);
      const uid = (await json(["get", "pod", "web", "-n", "team-a"])).metadata.uid;
      assert.equal(
        await ok(["label", "pod", "web", "-n", "team-a", "tier=fe", "example.com/owner=x"]),
        "pod/web labeled\n",
      );
      await fails(
        ["label", "pod", "web", "-n", "team-a", "app=db"],
        ["'app' already has a value (web), and --overwrite is false"],
      );
      assert.equal((await json(["get", "pod", "web", "-n", "team-a"])).metadata.labels?.app, "web");
      assert.equal(await ok(["label", "po", "web", "-n", "team-a", "app=db", "--overwrite"]), "pod/web labeled\n");
      assert.equal(await ok(["label", "pod/web", "-n", "team-a", "tier-"]), "pod/web labeled\n");
      const pod = await json(["get", "pod", "web", "-n", "team-a"]);
      assert.deepEqual(pod.metadata.labels, { app: "db", "example.com/owner": "x" });
      assert.equal(pod.metadata.uid, uid, "labeling is an in-place update");
      assert.equal(await ok(["label", "pod", "web", "-n", "team-a", "app=db"]), "pod/web not labeled\n");
      assert.equal(await ok(["label", "ns", "team-a", "env=prod"]), "namespace/team-a labeled\n");
      assert.equal(
        await ok(["label", "netpol", "allow-web", "-n", "team-a", "v=1"]),
        "networkpolicy.networking.k8s.io/allow-web labeled\n",
      );
      assert.match(await ok(["get", "ns", "team-a", "--show-labels"]), /env=prod/);
      // The agents see the labels through the store.
      const ns = await cur.open().objects.get({ kind: "Namespace", name: "team-a" });
      assert.deepEqual(ns.metadata.labels, { team: "a", "kubernetes.io/metadata.name": "team-a", env: "prod" });
      await fails(["label", "pod", "web", "-n", "team-a", "bad key=x"], ['invalid label key "bad key"']);
      await fails(["label", "pod", "web", "-n", "team-a", "k=-bad"], ["invalid label value"]);
      await fails(["label", "pod", "nope", "-n", "team-a", "k=v"], ['pods "nope" not found']);
      await fails(["label", "pod", "web", "-n", "team-a"], ["at least one label update is required"]);
    });

    withFresh("delete by file and by name; deleting a namespace deletes what it holds", async () => {
      await ok(["apply", "-f", "-"], MANIFEST);
      await ok(["apply", "-f", "-"], LIST);
      assert.equal(
        await ok(["delete", "-f", "-"], LIST.replace(/\{"apiVersion":"v1","kind":"Namespace"[^}]*\}\},/, "")),
        'pod "db" deleted\n',
      );
      await fails(["get", "pod", "db", "-n", "team-b"], ['pods "db" not found']);
      assert.equal(
        (await json(["get", "ns", "team-b"])).metadata.name,
        "team-b",
        "only what the file names is deleted",
      );

      assert.equal(await ok(["delete", "namespace", "team-a"]), 'namespace "team-a" deleted\n');
      const store = cur.open();
      assert.deepEqual(
        (await store.objects.list("Pod")).map((p) => `${p.metadata.namespace}/${p.metadata.name}`),
        ["default/loner"],
        "team-a's pod went with it",
      );
      assert.deepEqual(await store.objects.list("NetworkPolicy"), [], "team-a's policy went with it");
      assert.deepEqual(
        (await store.objects.list("Namespace")).map((n) => n.metadata.name),
        ["default", "team-b"],
      );

      assert.equal(await ok(["delete", "po", "loner"]), 'pod "loner" deleted\n');
      // A file with a namespace and what it holds: everything reported deleted.
      await ok(["apply", "-f", "-"], MANIFEST);
      assert.equal(
        await ok(["delete", "-f", "-"], MANIFEST),
        'pod "web" deleted\nnetworkpolicy.networking.k8s.io "allow-web" deleted\npod "loner" deleted\nnamespace "team-a" deleted\n',
      );
      // By label selector, in a namespace.
      await ok(["apply", "-f", "-"], LIST);
      await ok(
        ["apply", "-f", "-"],
        podYaml("app: web, tier: fe", 80)
          .replace(/team-a/g, "team-b")
          .replace("name: web", "name: web-b"),
      );
      assert.equal(
        await ok(["get", "pods", "-n", "team-b", "-l", "app in (web,db),tier!=be", "-o", "name"]),
        "pod/db\npod/web-b\n",
      );
      assert.equal(await ok(["get", "pods", "-n", "team-b", "-l", "tier", "-o", "name"]), "pod/web-b\n");
      await fails(["get", "pods", "-l", "app in (x"], ["--selector"]);
      assert.equal(await ok(["delete", "pods", "-n", "team-b", "-l", "app=db"]), 'pod "db" deleted\n');
      assert.deepEqual(
        (await store.objects.list("Pod")).map((p) => p.metadata.name),
        ["web-b"],
      );
      await fails(["delete", "pod", "loner"], ['pods "loner" not found']);
      assert.equal((await weft(["delete", "pod", "loner", "--ignore-not-found"])).code, 0);
      await fails(["delete", "ns", "default"], ['namespaces "default" is forbidden']);
      await fails(["delete", "pods"], ["no name"]);
    });

    withFresh("an invalid NetworkPolicy is rejected naming document and field; nothing is written", async () => {
      const bad = `${MANIFEST}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: team-a}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]
`;
      const r = await fails(
        ["apply", "-f", "-"],
        [
          "stdin (document 5)",
          'NetworkPolicy "broken" is invalid',
          "spec.ingress[0].from[0].ipBlock.except[0]",
          "strict subset",
        ],
        bad,
      );
      assert.equal(r.stdout, "");
      const store = cur.open();
      for (const kind of ["Namespace", "Pod", "NetworkPolicy"])
        assert.deepEqual(await store.objects.list(kind), [], `no ${kind} written`);
      // A typo in a field name would silently change a policy's meaning: rejected as the API server's strict validation does.
      await fails(
        ["apply", "-f", "-"],
        ['unknown field "spec.ingres"'],
        MANIFEST.replace("  ingress: [", "  ingres: ["),
      );
      await fails(
        ["apply", "-f", "-"],
        ["stdin (document 2)", "spec.containers[0].ports[0].containerPort", "between 1 and 65535"],
        MANIFEST.replace("containerPort: 80", "containerPort: 0"),
      );
      await fails(["apply", "-f", "-"], ["not valid YAML"], "kind: [Pod\n");
      for (const kind of ["Namespace", "Pod", "NetworkPolicy"])
        assert.deepEqual(await store.objects.list(kind), [], `still no ${kind}`);
    });

    withFresh("unknown kinds, missing namespaces and bad flags are one-line errors", async () => {
      await ok(["apply", "-f", "-"], MANIFEST);
      await fails(["get", "deployments"], ['unknown resource type "deployments"']);
      await fails(
        ["apply", "-f", "-"],
        ['kind "Deployment" is not supported'],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
      );
      await fails(
        ["apply", "-f", "-"],
        ['no matches for kind "Pod" in version "v2"'],
        "apiVersion: v2\nkind: Pod\nmetadata: {name: d}\nspec: {containers: [{name: c}]}\n",
      );
      await fails(
        ["apply", "-f", "-"],
        ['namespaces "ghost" not found'],
        podYaml("app: x", 80).replace("namespace: team-a", "namespace: ghost"),
      );
      await fails(["apply", "-f", "-", "-n", "other"], ['does not match the namespace "other"'], podYaml("app: x", 80));
      await fails(["apply", "-f", "/nonexistent/x.yaml"], ['the path "/nonexistent/x.yaml" does not exist']);
      await fails(["apply"], ["-f FILE"]);
      await fails(["get", "pods", "-o", "xml"], ["-o xml"]);
      await fails(["get", "pods", "-n", "Bad_NS"], ['--namespace "Bad_NS"']);
      await fails(["get", "pods", "-n", "x", "-A"], ["-n and -A"]);
      const none = await weft(["get", "pods", "-n", "ghost"]);
      assert.equal(none.code, 0);
      assert.equal(none.stdout, "");
      assert.equal(none.stderr, "No resources found in ghost namespace.\n");
      assert.equal((await json(["get", "pods", "-n", "ghost"])).items.length, 0);
      for (const cmd of ["apply", "get", "delete", "label"]) {
        const h = await weftRun([cmd, "--help"]);
        assert.equal(h.code, 0);
        assert.match(h.stdout, new RegExp(`^Usage: weft ${cmd}`));
      }
    });

    withFresh("get -w prints the current objects, then each change, until SIGTERM", async () => {
      await ok(["apply", "-f", "-"], MANIFEST);
      const child = spawn(process.execPath, [CLI, "get", "pods", "-n", "team-a", "-w", ...cur.flags], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "",
        err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      const closed = new Promise<number | null>((resolve) => child.once("close", resolve));
      const until = async (what: string, re: RegExp): Promise<void> => {
        const deadline = Date.now() + 20_000;
        while (!re.test(out)) {
          assert.ok(Date.now() < deadline, `no ${what} from get -w; stdout:\n${out}\nstderr:\n${err}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      try {
        await until("initial table", /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\nweb\s+0\/1\s+Pending/);
        await ok(["apply", "-f", "-"], podYaml("app: x", 80).replace("name: web", "name: second"));
        await until("row for the new pod", /\nsecond\s+0\/1\s+Pending/);
        assert.doesNotMatch(out, /loner/, "other namespaces are not watched");
      } finally {
        child.kill("SIGTERM");
      }
      assert.equal(await closed, 0, `get -w ends cleanly on SIGTERM: ${err}`);
    });

    withFresh("get nodes: Node objects from the node leases, NotReady once a lease expired", async () => {
      const store = cur.open();
      await store.initCluster({ clusterCIDRs: ["10.244.0.0/16", "fd00:10:244::/56"], backend: "vxlan" });
      const lease = await store.registerNode({
        name: "node-1",
        addresses: ["192.168.50.11", "fd00:50::11"],
        backendData: { vtepMAC: "02:00:00:00:00:01" },
      });
      // A second client whose node will stop renewing (closing the store = a crashed agent).
      const doomedStore = cur.open();
      await doomedStore.registerNode({ name: "node-2", addresses: ["192.168.50.12"] }, { ttlSeconds: 2 });

      const list = await json(["get", "nodes"]);
      assert.equal(list.kind, "List");
      assert.deepEqual(
        list.items.map((n) => n.metadata.name),
        ["node-1", "node-2"],
      );
      const n1 = list.items[0] as unknown as {
        kind: string;
        spec: { podCIDR: string; podCIDRs: string[] };
        status: {
          addresses: Array<{ type: string; address: string }>;
          conditions: Array<{ type: string; status: string }>;
        };
      };
      assert.equal(n1.kind, "Node");
      assert.deepEqual(n1.spec.podCIDRs, lease.node.podCIDRs);
      assert.equal(n1.spec.podCIDR, lease.node.podCIDRs[0]);
      assert.equal(n1.spec.podCIDRs.length, 2);
      assert.deepEqual(
        n1.status.addresses.filter((a) => a.type === "InternalIP").map((a) => a.address),
        ["192.168.50.11", "fd00:50::11"],
      );
      assert.deepEqual(
        n1.status.conditions.filter((c) => c.type === "Ready").map((c) => c.status),
        ["True"],
      );
      const one = await json(["get", "no", "node-1"]);
      assert.equal(one.kind, "Node");
      assert.match(
        await ok(["get", "nodes", "-o", "wide"]),
        /^NAME\s+STATUS\s+AGE\s+POD-CIDRS\s+INTERNAL-IP\nnode-1\s+Ready\s+\S+\s+10\.244\.\d+\.0\/24,fd00:10:244:[0-9a-f]*::\/64\s+192\.168\.50\.11,fd00:50::11\n/,
      );

      await doomedStore.close();
      const deadline = Date.now() + 30_000;
      while ((await store.listNodes()).some((n) => n.name === "node-2")) {
        assert.ok(Date.now() < deadline, "node-2's lease did not expire");
        await new Promise((r) => setTimeout(r, 250));
      }
      const later = await json(["get", "nodes"]);
      const n2 = later.items.find((n) => n.metadata.name === "node-2") as unknown as
        { spec: { podCIDRs: string[] }; status: { conditions: Array<{ type: string; status: string }> } } | undefined;
      assert.ok(n2, "an expired node whose subnet is still reserved is listed");
      assert.deepEqual(
        n2.status.conditions.map((c) => `${c.type}=${c.status}`),
        ["Ready=False"],
      );
      assert.equal(n2.spec.podCIDRs.length, 2);
      assert.match(await ok(["get", "nodes"]), /\nnode-2\s+NotReady\s/);
      await fails(["get", "node", "node-9"], ['nodes "node-9" not found']);
      await fails(["label", "node", "node-1", "a=b"], ["node leases"]);
      await fails(["apply", "-f", "-"], ["cannot be applied"], "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n");
      await lease.release({ freeSubnets: true });
    });
  });
}

suite(localBackend());
suite(etcdBackend());
