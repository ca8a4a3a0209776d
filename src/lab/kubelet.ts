// The lab kubelet: one detached process for the whole lab that plays every node's kubelet and
// container runtime. It watches Pods in the lab store, schedules unplaced ones (writes
// spec.nodeName, spreading by load), makes each pod's network namespace, wires it with the real
// CNI plugin chain from the node's conflist exactly as a runtime would (ADD in order with
// prevResult, DEL in reverse, run inside the node's namespace), starts the pod server and writes
// the Pod status like a kubelet.
//   node dist/lab/kubelet.js --lab-dir DIR        (started by `weft lab up`)
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { PodSchema } from "../k8s/types.js";
import {
  addChain,
  delChain,
  REFERENCE_PLUGIN_DIR,
  resultAddresses,
  type Attachment,
  type ConflistJson,
} from "./cni-runtime.js";
import { LabNames, netnsPathOf } from "./names.js";
import { controlCall } from "./probe-protocol.js";
import { podKey, readPods, writePods, type LabPod, type PodsFile } from "./pods-state.js";
import { childEnv, isAlive, spawnDetached, stopProc } from "./procs.js";
import { openPodSource, type PodEvent, type PodObject, type PodSource } from "./pod-source/index.js";
import { readState, type LabNode, type LabState } from "./state.js";
import { deleteNetns, ensureNetns } from "./topology.js";

const POD_SERVER_MAIN = join(dirname(fileURLToPath(import.meta.url)), "pod-server.js");
const RETRY_MS = 3000;

function log(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} kubelet: ${msg}\n`);
}

type Port = LabPod["ports"][number];

function podPorts(obj: PodObject): Port[] {
  const pod = PodSchema.safeParse(obj);
  if (!pod.success) return [];
  const out: Port[] = [];
  const seen = new Set<string>();
  for (const c of pod.data.spec.containers) {
    for (const p of c.ports ?? []) {
      const protocol = (p.protocol ?? "TCP").toUpperCase();
      if (protocol !== "TCP" && protocol !== "UDP" && protocol !== "SCTP") continue;
      const k = `${protocol}/${p.containerPort}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push({ port: p.containerPort, protocol });
    }
  }
  return out;
}

function hostPorts(obj: PodObject): Array<{ hostPort: number; containerPort: number; protocol: string }> {
  const pod = PodSchema.safeParse(obj);
  if (!pod.success) return [];
  return pod.data.spec.containers.flatMap((c) =>
    (c.ports ?? [])
      .filter((p) => p.hostPort)
      .map((p) => ({
        hostPort: p.hostPort!,
        containerPort: p.containerPort,
        protocol: (p.protocol ?? "TCP").toLowerCase(),
      })),
  );
}

export class LabKubelet {
  private pods: PodsFile;
  private readonly queues = new Map<string, Promise<void>>();
  private readonly latest = new Map<string, PodObject | undefined>();
  private readonly retry = new Map<string, NodeJS.Timeout>();
  /** Bindings written but not yet seen back from the store. */
  private readonly binding = new Map<string, string>();
  private rr = 0;
  private stopped = false;

  constructor(
    private readonly names: LabNames,
    private readonly lab: LabState,
    private readonly source: PodSource,
  ) {
    this.pods = readPods(lab.dir);
    mkdirSync(names.podDir(), { recursive: true, mode: 0o700 });
  }

  private save(): void {
    writePods(this.lab.dir, this.pods);
  }

  /** Every change to one pod runs after the previous one finished; only the newest object counts. */
  private enqueue(key: string): void {
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev
      .then(() => this.reconcile(key))
      .catch((e: unknown) => {
        log(`${key}: ${(e as Error).message}`);
        this.scheduleRetry(key);
      });
    this.queues.set(key, next);
  }

  private scheduleRetry(key: string): void {
    if (this.stopped || this.retry.has(key)) return;
    this.retry.set(
      key,
      setTimeout(() => {
        this.retry.delete(key);
        this.enqueue(key);
      }, RETRY_MS),
    );
  }

  onEvent(ev: PodEvent): void {
    const key = podKey(ev.pod.metadata.namespace ?? "default", ev.pod.metadata.name);
    this.latest.set(key, ev.type === "removed" ? undefined : ev.pod);
    if (ev.type === "removed" || (ev.pod.spec as { nodeName?: unknown } | undefined)?.nodeName)
      this.binding.delete(key);
    this.enqueue(key);
  }

  /** After the initial list: pods recorded but no longer in the store are removed. */
  afterReplay(): void {
    for (const key of Object.keys(this.pods.pods)) if (!this.latest.has(key)) this.enqueue(key);
  }

  /** Like a kubelet's sync loop: a pod whose server died gets it back. */
  resync(): void {
    for (const [key, rec] of Object.entries(this.pods.pods)) {
      if (rec.phase === "Running" && this.latest.has(key) && !isAlive(rec.server)) {
        log(`${key}: pod server is gone; restarting it`);
        this.enqueue(key);
      }
    }
  }

  async idle(): Promise<void> {
    await Promise.all([...this.queues.values()]);
  }

  private async reconcile(key: string): Promise<void> {
    if (this.stopped) return;
    const obj = this.latest.get(key);
    const have = this.pods.pods[key];
    if (!obj) {
      if (have) await this.teardown(key, have);
      return;
    }
    if (obj.metadata.deletionTimestamp) {
      // Graceful deletion (Kubernetes): stop the pod, then tell the API server it is gone.
      if (have) await this.teardown(key, have);
      await this.source.confirmDeleted(obj);
      return;
    }
    if (have && have.uid !== obj.metadata.uid) await this.teardown(key, have);
    const cur = this.pods.pods[key];
    if (cur && cur.phase === "Running") {
      if (!isAlive(cur.server)) {
        // Not Running while its process restarts: probes say "not running yet", not "refused".
        cur.phase = "Creating";
        this.save();
        await this.startServer(key, cur);
        cur.phase = "Running";
        this.save();
      }
      await this.writeStatus(obj, cur);
      return;
    }
    await this.setup(key, obj, cur);
  }

  private node(name: string): LabNode | undefined {
    return this.lab.nodes.find((n) => n.name === name);
  }

  /** The least-loaded node; ties go round-robin. */
  private pickNode(): LabNode {
    // Load = pods bound to each node as far as we know: the store's view (spec.nodeName, which
    // covers pods not wired yet) plus bindings we made whose update has not come back yet.
    const load = new Map(this.lab.nodes.map((n) => [n.name, 0]));
    const bound = new Map<string, string>(this.binding);
    for (const [key, obj] of this.latest) {
      const nn = (obj?.spec as { nodeName?: unknown } | undefined)?.nodeName;
      if (typeof nn === "string" && nn) bound.set(key, nn);
    }
    for (const n of bound.values()) if (load.has(n)) load.set(n, load.get(n)! + 1);
    const min = Math.min(...load.values());
    const n = this.lab.nodes.length;
    for (let i = 0; i < n; i++) {
      const cand = this.lab.nodes[(this.rr + i) % n];
      if (load.get(cand.name) === min) {
        this.rr = (this.rr + i + 1) % n;
        return cand;
      }
    }
    return this.lab.nodes[0];
  }

  private async setup(key: string, obj: PodObject, existing: LabPod | undefined): Promise<void> {
    const ns = obj.metadata.namespace ?? "default";
    const name = obj.metadata.name;
    const spec = (obj.spec ?? {}) as { nodeName?: unknown; hostNetwork?: unknown };
    const nodeName = typeof spec.nodeName === "string" && spec.nodeName ? spec.nodeName : undefined;
    if (!nodeName) {
      // The scheduler's part: bind the pod to a node. The resulting update event comes back here.
      const target = existing?.node ?? this.pickNode().name;
      this.binding.set(key, target);
      try {
        await this.source.bind(obj, target);
      } catch (e) {
        this.binding.delete(key);
        throw e;
      }
      log(`${key}: scheduled to ${target}`);
      return;
    }
    const node = this.node(nodeName);
    if (!node) {
      await this.source.updateStatus(ns, name, {
        phase: "Pending",
        conditions: [
          {
            type: "PodScheduled",
            status: "False",
            reason: "NodeNotFound",
            message: `node ${nodeName} is not in the lab (nodes: ${this.lab.nodes.map((n) => n.name).join(", ")})`,
          },
        ],
      });
      return;
    }
    if (spec.hostNetwork === true) return this.setupHostNetwork(key, obj, node);
    const rec: LabPod = existing ?? {
      namespace: ns,
      name,
      uid: obj.metadata.uid,
      node: node.name,
      netns: this.names.podNetns(ns, name),
      containerId: randomBytes(32).toString("hex"),
      ips: [],
      ports: podPorts(obj),
      controlSocket: this.names.podControlSocket(ns, name),
      phase: "Creating",
    };
    // Recorded before anything is made, so a crash here still leaves a record to clean up.
    this.pods.pods[key] = rec;
    this.save();
    await ensureNetns(rec.netns);
    const list = JSON.parse(readFileSync(join(node.cniConfDir, "10-weft.conflist"), "utf8")) as ConflistJson;
    const at = this.attachment(rec, obj);
    const opts = { path: [node.cniBinDir, REFERENCE_PLUGIN_DIR], runIn: netnsPathOf(node.netns) };
    const add = await addChain(list, at, opts);
    if (!add.ok) {
      const last = add.steps[add.steps.length - 1];
      const why = `CNI ADD failed in plugin ${last?.type}: ${(last?.out.stdout || last?.out.stderr || "").trim()}`;
      // What a runtime does after a failed ADD: DEL through the chain, then try again later.
      await delChain(list, at, undefined, opts).catch(() => undefined);
      rec.message = why;
      this.save();
      await this.source
        .updateStatus(ns, name, {
          phase: "Pending",
          hostIP: node.ipv4,
          conditions: [{ type: "Ready", status: "False", reason: "NetworkSetupFailed", message: why }],
        })
        .catch(() => undefined);
      throw new Error(why);
    }
    rec.cniResult = add.result;
    const ips = resultAddresses(add.result);
    rec.ips = [...ips.filter((a) => !a.includes(":")), ...ips.filter((a) => a.includes(":"))];
    delete rec.message;
    this.save();
    await this.startServer(key, rec);
    rec.phase = "Running";
    this.save();
    log(`${key}: running on ${node.name} with ${rec.ips.join(", ")}`);
    await this.writeStatus(obj, rec);
  }

  private async setupHostNetwork(key: string, obj: PodObject, node: LabNode): Promise<void> {
    const ns = obj.metadata.namespace ?? "default";
    const rec: LabPod = {
      namespace: ns,
      name: obj.metadata.name,
      uid: obj.metadata.uid,
      node: node.name,
      netns: node.netns,
      containerId: randomBytes(32).toString("hex"),
      ips: [node.ipv4, ...(node.ipv6 ? [node.ipv6] : [])],
      ports: podPorts(obj),
      controlSocket: this.names.podControlSocket(ns, obj.metadata.name),
      phase: "Creating",
    };
    this.pods.pods[key] = rec;
    this.save();
    await this.startServer(key, rec);
    rec.phase = "Running";
    this.save();
    await this.writeStatus(obj, rec);
  }

  private attachment(rec: LabPod, obj: PodObject): Attachment {
    const hp = hostPorts(obj);
    return {
      containerId: rec.containerId,
      netns: netnsPathOf(rec.netns),
      ifname: "eth0",
      args: {
        IgnoreUnknown: "1",
        K8S_POD_NAMESPACE: rec.namespace,
        K8S_POD_NAME: rec.name,
        K8S_POD_INFRA_CONTAINER_ID: rec.containerId,
        K8S_POD_UID: rec.uid,
      },
      ...(hp.length ? { capabilityArgs: { portMappings: hp } } : {}),
    };
  }

  private async startServer(key: string, rec: LabPod): Promise<void> {
    await stopProc(rec.server, 1000);
    rec.server = spawnDetached(
      [
        "nsenter",
        `--net=${netnsPathOf(rec.netns)}`,
        "--",
        process.execPath,
        POD_SERVER_MAIN,
        "--control",
        rec.controlSocket,
        "--ports",
        JSON.stringify(rec.ports),
      ],
      { log: rec.controlSocket.replace(/\.sock$/, ".log"), env: childEnv() },
    );
    this.save();
    const until = Date.now() + 15_000;
    for (;;) {
      try {
        const r = await controlCall(rec.controlSocket, { op: "ping" }, 1000);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      if (!isAlive(rec.server))
        throw new Error(`${key}: the pod server exited; see ${rec.controlSocket.replace(/\.sock$/, ".log")}`);
      if (Date.now() > until) throw new Error(`${key}: the pod server did not answer within 15 s`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  private async writeStatus(obj: PodObject, rec: LabPod): Promise<void> {
    const node = this.node(rec.node)!;
    const want = {
      phase: "Running",
      podIP: rec.ips[0],
      podIPs: rec.ips.map((ip) => ({ ip })),
      hostIP: node.ipv4,
      hostIPs: [node.ipv4, ...(node.ipv6 ? [node.ipv6] : [])].map((ip) => ({ ip })),
    };
    const cur = (obj.status ?? {}) as Record<string, unknown>;
    const same =
      cur.phase === want.phase &&
      cur.podIP === want.podIP &&
      JSON.stringify(cur.podIPs) === JSON.stringify(want.podIPs) &&
      cur.hostIP === want.hostIP;
    if (same) return;
    const started = (cur.startTime as string | undefined) ?? new Date().toISOString();
    const containers =
      (obj.spec as { containers?: Array<{ name?: string; image?: string }> } | undefined)?.containers ?? [];
    const status = {
      ...want,
      containerStatuses: containers.map((c) => ({
        name: c.name ?? "main",
        ready: true,
        started: true,
        restartCount: 0,
        image: c.image ?? "weft-lab/pod-server",
        imageID: "",
        containerID: `weft-lab://${rec.containerId}`,
        state: { running: { startedAt: started } },
      })),
      startTime: started,
      conditions: [
        { type: "PodScheduled", status: "True" },
        { type: "Initialized", status: "True" },
        { type: "ContainersReady", status: "True" },
        { type: "Ready", status: "True" },
      ],
    };
    await this.source.updateStatus(rec.namespace, rec.name, status);
  }

  private async teardown(key: string, rec: LabPod): Promise<void> {
    rec.phase = "Deleting";
    this.save();
    await stopProc(rec.server, 1000);
    const node = this.node(rec.node);
    if (node && rec.netns !== node.netns) {
      const list = JSON.parse(readFileSync(join(node.cniConfDir, "10-weft.conflist"), "utf8")) as ConflistJson;
      const at: Attachment = {
        containerId: rec.containerId,
        netns: netnsPathOf(rec.netns),
        ifname: "eth0",
        args: {
          IgnoreUnknown: "1",
          K8S_POD_NAMESPACE: rec.namespace,
          K8S_POD_NAME: rec.name,
          K8S_POD_INFRA_CONTAINER_ID: rec.containerId,
          K8S_POD_UID: rec.uid,
        },
      };
      const del = await delChain(list, at, rec.cniResult, {
        path: [node.cniBinDir, REFERENCE_PLUGIN_DIR],
        runIn: netnsPathOf(node.netns),
      });
      if (!del.ok) {
        const last = del.steps[del.steps.length - 1];
        throw new Error(
          `CNI DEL failed in plugin ${last?.type}: ${(last?.out.stdout || last?.out.stderr || "").trim()}`,
        );
      }
      await deleteNetns(rec.netns);
    }
    rmSync(rec.controlSocket, { force: true });
    delete this.pods.pods[key];
    this.save();
    log(`${key}: removed from ${rec.node}`);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.retry.values()) clearTimeout(t);
  }
}

export async function runKubelet(labDir: string): Promise<void> {
  const names = LabNames.fromEnv();
  const lab = readState(join(labDir, "state.json"));
  if (!lab) throw new Error(`no lab state in ${labDir}`);
  const source = await openPodSource(lab);
  const k = new LabKubelet(names, lab, source);
  const watch = source.watch((ev) => k.onEvent(ev));
  await watch.ready;
  k.afterReplay();
  writeFileSync(join(labDir, "kubelet", "ready"), `${process.pid}\n`);
  log(`watching pods in ${source.description}`);
  const sync = setInterval(() => k.resync(), 5000);
  const stop = () => {
    clearInterval(sync);
    k.stop();
    void watch.close().finally(() => void source.close().finally(() => process.exit(0)));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { "lab-dir": { type: "string" } } });
  const dir = values["lab-dir"];
  if (!dir) {
    process.stderr.write("kubelet: --lab-dir DIR is required\n");
    process.exit(2);
  }
  runKubelet(dir).catch((e: unknown) => {
    log(`cannot start: ${(e as Error).stack ?? String(e)}`);
    process.exit(1);
  });
}
