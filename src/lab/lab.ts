// `lab up` and `lab down`: the whole virtual cluster's life cycle. Every step is recorded in the
// state file before it is taken, and every step checks what already exists, so `up` is
// idempotent and `down` removes exactly what was made, also after a crash of any part.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { birdPaths, stopBird } from "../kernel/bird.js";
import { installCni } from "../cni-install/index.js";
import {
  agentArgv,
  agentCaps,
  CLI_MAIN,
  nodeKubeconfig,
  startAgent,
  waitAgent,
  type AgentCaps,
  type AgentMode,
} from "./agents.js";
import { startNodeProxy, startRootProxy, writeNodeKubeconfig } from "./api-proxy.js";
import {
  labClientTls,
  labEtcdFlags,
  makeLabEtcdCertificates,
  planMembers,
  startMember,
  tcpEndpoints,
  waitHealthy,
} from "./etcd.js";
import {
  CLUSTER_CIDR_V4,
  CLUSTER_CIDR_V6,
  LabNames,
  UNDERLAY_GATEWAY_V4,
  UNDERLAY_GATEWAY_V6,
  localPodCidrs,
  MAX_NODES,
  netnsPathOf,
  underlayV4,
  underlayV6,
} from "./names.js";
import { ensureApiserver } from "./apiserver.js";
import { kubeletToken, realDown, realPreflight, realUp } from "./realnode/index.js";
import { LabBusy, withLock } from "./lock.js";
import { openLabStore } from "./store.js";
import { readPods } from "./pods-state.js";
import { childEnv, isAlive, killNetnsProcesses, logTail, spawnDetached, stopProc } from "./procs.js";
import { readState, settingsDiff, writeState, type LabNode, type LabSettings, type LabState } from "./state.js";
import { deleteNetns, ensureNode, ensureUnderlay, isHostNetns, listNetns, UNDERLAY_BRIDGE } from "./topology.js";
import {
  EXTERNAL_AS,
  EXTERNAL_V4,
  EXTERNAL_V6,
  ensureExternalNetns,
  ensureFrr,
  ensureTorNetns,
  externalConfig,
  fabricV4,
  fabricV6,
  frrRoot,
  nodeHost,
  rackOf,
  rackV4,
  rackV6,
  routerDir,
  stopRouter,
  torAs,
  torConfig,
  torFabricHost,
} from "./tor.js";
import { labelRackNodes } from "./rack-labels.js";

export class LabError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "LabError";
  }
}

export type Progress = (line: string) => void;

export const KUBELET_MAIN = join(CLI_MAIN, "..", "..", "lab", "kubelet.js");

export function validateSettings(s: LabSettings): void {
  if (!Number.isInteger(s.nodes) || s.nodes < 1 || s.nodes > MAX_NODES)
    throw new LabError(`--nodes ${s.nodes}: must be an integer from 1 to ${MAX_NODES}`);
  if (s.kubelet === "real" && s.store !== "kubernetes")
    throw new LabError("--kubelet real runs a real control plane: it needs --store kubernetes (the default with it)");
  const racks = s.racks ?? 0;
  if (racks !== 0) {
    if (!Number.isInteger(racks) || racks < 1 || racks > 9) throw new LabError(`--racks ${racks}: must be 1 to 9`);
    if (s.backend !== "bgp")
      throw new LabError(`--racks ${racks}: racks route pods through their ToR over BGP: it needs --backend bgp`);
    if (s.nodes < racks) throw new LabError(`--racks ${racks}: more racks than --nodes ${s.nodes}`);
    if (s.kubelet === "real") throw new LabError(`--racks: not with --kubelet real`);
  } else if (s.torMode !== undefined) throw new LabError(`--tor-mode ${s.torMode}: only with --racks`);
}

function planState(names: LabNames, s: LabSettings, agentMode: AgentMode, etcd: LabState["etcd"]): LabState {
  const nodes: LabNode[] = [];
  const racks = s.racks ?? 0;
  for (let i = 1; i <= s.nodes; i++) {
    const name = names.nodeName(i);
    const dir = names.nodeDir(name);
    const rack = racks ? rackOf(i, s.nodes, racks) : 0;
    nodes.push({
      name,
      netns: names.nodeNetns(name),
      ipv4: rack ? rackV4(rack, nodeHost(i)) : underlayV4(i),
      ...(s.dualStack ? { ipv6: rack ? rackV6(rack, nodeHost(i)) : underlayV6(i) } : {}),
      ...(rack ? { rack } : {}),
      dir,
      socket: join(dir, "weft.sock"),
      cniBinDir: join(dir, "cni", "bin"),
      cniConfDir: join(dir, "cni", "net.d"),
      ...(agentMode === "local" ? { podCidrs: localPodCidrs(i, s.dualStack) } : {}),
    });
  }
  const mode = s.torMode ?? "ebgp";
  const tors = Array.from({ length: racks }, (_, k) => {
    const r = k + 1;
    return {
      rack: r,
      netns: names.torNetns(r),
      as: torAs(r, mode),
      ipv4: rackV4(r, 1),
      ...(s.dualStack ? { ipv6: rackV6(r, 1) } : {}),
      fabric4: fabricV4(torFabricHost(r)),
      ...(s.dualStack ? { fabric6: fabricV6(torFabricHost(r)) } : {}),
      frrDir: routerDir(names.dir, `tor${r}`),
    };
  });
  const external = racks
    ? {
        netns: names.externalNetns,
        as: EXTERNAL_AS,
        ipv4: EXTERNAL_V4,
        ...(s.dualStack ? { ipv6: EXTERNAL_V6 } : {}),
        frrDir: routerDir(names.dir, "external"),
      }
    : undefined;
  return {
    version: 1,
    id: names.id,
    dir: names.dir,
    settings: { ...s, kubelet: s.kubelet ?? "lab" },
    agentMode,
    clusterInit: false,
    clusterCidrs: s.dualStack ? [CLUSTER_CIDR_V4, CLUSTER_CIDR_V6] : [CLUSTER_CIDR_V4],
    namespaces: [
      names.underlayNetns,
      ...tors.map((t) => t.netns),
      ...(external ? [external.netns] : []),
      ...nodes.map((n) => n.netns),
    ],
    ...(racks ? { tors, external } : {}),
    underlay: { netns: names.underlayNetns, bridge: UNDERLAY_BRIDGE },
    etcd,
    nodes,
    createdAt: new Date().toISOString(),
    ready: false,
  };
}

function lockFile(names: LabNames): string {
  return `${names.dir}.lock`;
}

async function locked<T>(names: LabNames, fn: () => Promise<T>): Promise<T> {
  try {
    return await withLock(lockFile(names), fn);
  } catch (e) {
    if (e instanceof LabBusy) throw new LabError(e.message);
    throw e;
  }
}

/** Brings the lab up (or completes it); returns its state. */
export async function labUp(names: LabNames, want: LabSettings, progress: Progress): Promise<LabState> {
  validateSettings(want);
  if (want.kubelet === "real") {
    // Missing binaries or images: say so before anything is made.
    try {
      realPreflight();
    } catch (e) {
      throw new LabError((e as Error).message);
    }
  }
  return locked(names, () => up(names, want, progress));
}

async function up(names: LabNames, want: LabSettings, progress: Progress): Promise<LabState> {
  let st = readState(names.stateFile);
  if (st) {
    const diff = settingsDiff(want, st.settings);
    if (diff.length) {
      throw new LabError(
        `a lab is already running with other settings: ${diff.join(", ")}; run \`weft lab down\` first`,
      );
    }
    progress(st.ready ? "lab is up already; checking its parts" : "completing a lab that was not finished");
  } else {
    mkdirSync(names.dir, { recursive: true, mode: 0o700 });
    // Agents without the store's cluster mode run in the single-host fallback. Real nodes run
    // no lab agent: weft comes from its DaemonSet, over the apiserver.
    const real = want.kubelet === "real";
    const caps = real ? undefined : agentCaps();
    const mode: AgentMode = real
      ? "kubernetes"
      : want.store === "kubernetes"
        ? caps!.kubernetes
          ? "kubernetes"
          : "local"
        : caps!.etcd
          ? "etcd"
          : "local";
    st = planState(names, want, mode, await planMembers(names.dir, want.etcdMembers));
    // Made before the state is written: a lab on record always has its certificates.
    st.etcdTls = makeLabEtcdCertificates(names.dir);
    writeState(names.stateFile, st);
    if (!real)
      progress(
        `agents run in ${mode === "local" ? "fallback mode (--store local --pod-cidr per node)" : `cluster mode (--store ${mode})`}`,
      );
  }
  const save = () => writeState(names.stateFile, st!);

  const dual = st.settings.dualStack;
  if (st.tors && st.external) {
    // Racks: the underlay namespace is the fabric switch (no address of its own); each rack's
    // segment is a bridge in its ToR's namespace, the ToR its gateway.
    progress(
      `fabric ${st.underlay.netns} (bridge ${UNDERLAY_BRIDGE}), external ${st.external.netns} ${st.external.ipv4}`,
    );
    await ensureUnderlay(st.underlay.netns, []);
    await ensureExternalNetns(st.underlay.netns, st.external);
    for (const t of st.tors) {
      progress(`rack r${t.rack}: ToR ${t.netns} (FRR, AS ${t.as}), nodes' gateway ${t.ipv4}, fabric ${t.fabric4}`);
      await ensureTorNetns(st.underlay.netns, t);
    }
  } else {
    progress(`underlay ${st.underlay.netns} (bridge ${UNDERLAY_BRIDGE})`);
    await ensureUnderlay(st.underlay.netns, dual ? [UNDERLAY_GATEWAY_V4, UNDERLAY_GATEWAY_V6] : [UNDERLAY_GATEWAY_V4]);
  }
  for (const n of st.nodes) {
    const tor = st.tors?.find((t) => t.rack === n.rack);
    progress(
      `node ${n.name}: namespace ${n.netns}, underlay ${n.ipv4}${n.ipv6 ? ` ${n.ipv6}` : ""}${tor ? `, rack r${tor.rack}` : ""}`,
    );
    await ensureNode({
      ul: tor ? tor.netns : st.underlay.netns,
      node: n.name,
      netns: n.netns,
      ipv4: n.ipv4,
      gateway4: tor ? tor.ipv4 : UNDERLAY_GATEWAY_V4,
      ...(n.ipv6 ? { ipv6: n.ipv6, gateway6: tor ? tor.ipv6 : UNDERLAY_GATEWAY_V6 } : {}),
    });
  }
  if (st.tors && st.external) {
    mkdirSync(frrRoot(st.dir), { recursive: true, mode: 0o755 });
    const mode = st.settings.torMode ?? "ebgp";
    for (const t of st.tors) {
      const pids = await ensureFrr(t, torConfig(t, mode, st.clusterCidrs)).catch((e: Error) => {
        throw new LabError(`rack r${t.rack} ToR: ${e.message}`);
      });
      progress(`rack r${t.rack}: FRR (${mode}) running, pids ${pids.join(",")}, files ${t.frrDir}`);
    }
    const pids = await ensureFrr(st.external, externalConfig(st.external, st.tors, mode)).catch((e: Error) => {
      throw new LabError(`external router: ${e.message}`);
    });
    progress(`external: FRR (AS ${st.external.as}) running, pids ${pids.join(",")}`);
  }

  progress(
    `etcd: ${st.etcd.length} member(s) on ${tcpEndpoints(st.etcd).join(",")}${st.etcdTls ? `, client-certificate TLS (${dirname(st.etcdTls.caFile)})` : ""}`,
  );
  st.etcd = st.etcd.map((m) => startMember(m, st!.etcd, st!.etcdTls));
  save();
  await waitHealthy(st.etcd, st.etcdTls);

  let apiserverRestarted = false;
  if (st.settings.store === "kubernetes" && !isAlive(st.apiserver?.proc)) {
    progress(`kube-apiserver: starting over the lab etcd`);
    const old = st.apiserver;
    try {
      st.apiserver = await ensureApiserver(
        st.dir,
        tcpEndpoints(st.etcd),
        labClientTls(st.etcdTls),
        st.apiserver,
        st.settings.kubelet === "real",
        // Each real kubelet its own identity (Node authorizer, NodeRestriction), not the admin token.
        st.settings.kubelet === "real" ? st.nodes.map((n) => kubeletToken(n.name)) : [],
      );
    } catch (e) {
      throw new LabError((e as Error).message);
    }
    apiserverRestarted = old !== undefined;
    // A new apiserver has a new port and token: its forwarder and the agents start afresh.
    if (old?.proxy) await stopProc(old.proxy);
    save();
    progress(`kube-apiserver: ready on ${st.apiserver.url}, log ${join(st.apiserver.dir, "apiserver.log")}`);
  }
  if (st.apiserver && st.agentMode === "kubernetes") {
    st.apiserver.proxy = startRootProxy(st.dir, st.apiserver.url, st.apiserver.proxy);
    save();
  }

  if (st.settings.kubelet === "real") {
    // Real nodes: containerd + kubelet per node, KCM + scheduler; no weft (kubectl apply installs it).
    try {
      await realUp(st, save, progress);
    } catch (e) {
      throw new LabError((e as Error).message);
    }
    st.ready = true;
    save();
    progress(
      `lab up: ${st.nodes.length} real node(s) (containerd + kubelet), kube-apiserver ${st.apiserver!.url} (weft lab kubeconfig); install weft with kubectl apply -f deploy/weft.yaml`,
    );
    return st;
  }

  if (!st.clusterInit) {
    // What `weft cluster init` does, through the store API: the cluster CIDRs and backend the
    // agents' cluster mode reads. Re-running it with the same settings is a no-op.
    progress(`cluster init: ${st.clusterCidrs.join(",")}, backend ${st.settings.backend}`);
    const store = openLabStore(st);
    try {
      await store.initCluster({ clusterCIDRs: st.clusterCidrs, backend: st.settings.backend });
    } catch (e) {
      throw new LabError(`cluster init in ${store.description} failed: ${(e as Error).message}`);
    } finally {
      await store.close();
    }
    st.clusterInit = true;
    save();
  }

  let caps: AgentCaps | undefined;
  for (let i = 0; i < st.nodes.length; i++) {
    const n = st.nodes[i];
    mkdirSync(n.dir, { recursive: true, mode: 0o700 });
    if (!existsSync(join(n.cniConfDir, "10-weft.conflist")) || !existsSync(join(n.cniBinDir, "weft"))) {
      progress(`node ${n.name}: install-cni into ${join(n.dir, "cni")}`);
      try {
        await installCni({ binDir: n.cniBinDir, confDir: n.cniConfDir, socket: n.socket, name: "weft", portmap: true });
      } catch (e) {
        throw new LabError(`node ${n.name}: ${(e as Error).message}`);
      }
    }
    if (st.agentMode === "kubernetes" && st.apiserver) {
      if (apiserverRestarted) await stopProc(n.agent);
      writeNodeKubeconfig(st.apiserver.kubeconfig, nodeKubeconfig(n));
      st.nodes[i] = { ...st.nodes[i], apiProxy: startNodeProxy(st.dir, n.netns, n.dir, n.apiProxy) };
      save();
    }
    if (!isAlive(st.nodes[i].agent)) {
      progress(`node ${n.name}: starting agent (${st.agentMode} mode), log ${join(n.dir, "agent.log")}`);
      st.nodes[i] = startAgent(st.nodes[i], st.agentMode, labEtcdFlags(st), (caps ??= agentCaps()));
      save();
    }
  }
  for (const n of st.nodes) {
    try {
      await waitAgent(n);
    } catch (e) {
      throw new LabError((e as Error).message);
    }
  }

  if (st.tors && !st.labelled) {
    // BGPPeer nodeSelectors select racks by these labels (Node objects: the kubernetes store).
    const done = await labelRackNodes(st).catch((e: Error) => {
      throw new LabError(`labelling the nodes with their racks: ${e.message}`);
    });
    progress(
      done
        ? "nodes labelled rack=rN"
        : "no rack labels: the etcd store has no Node labels (use --store kubernetes for BGPPeer nodeSelectors; peers per node work everywhere)",
    );
    st.labelled = true;
    save();
  }

  if (!isAlive(st.kubelet)) {
    progress(`kubelet: starting, log ${join(st.dir, "kubelet", "kubelet.log")}`);
    const kdir = join(st.dir, "kubelet");
    mkdirSync(kdir, { recursive: true, mode: 0o700 });
    rmSync(join(kdir, "ready"), { force: true });
    st.kubelet = spawnDetached([process.execPath, KUBELET_MAIN, "--lab-dir", st.dir], {
      log: join(kdir, "kubelet.log"),
      env: { ...childEnv(), WEFT_LAB_ID: names.id, WEFT_LAB_DIR: names.dir },
    });
    save();
    await waitFile(join(kdir, "ready"), st.kubelet, join(kdir, "kubelet.log"));
  }
  st.ready = true;
  save();
  progress(
    `lab up: ${st.nodes.length} node(s), etcd ${tcpEndpoints(st.etcd).join(",")}${st.apiserver ? `, kube-apiserver ${st.apiserver.url} (weft lab kubeconfig)` : ""}`,
  );
  return st;
}

async function waitFile(file: string, proc: LabState["kubelet"], log: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (!isAlive(proc)) throw new LabError(`the lab kubelet exited: ${logTail(log)}`);
    if (Date.now() > until)
      throw new LabError(`the lab kubelet did not get ready within ${timeoutMs} ms: ${logTail(log)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Removes everything the lab made. Returns false when there was no lab. */
export async function labDown(names: LabNames, progress: Progress): Promise<boolean> {
  return locked(names, () => down(names, progress));
}

async function down(names: LabNames, progress: Progress): Promise<boolean> {
  const st = readState(names.stateFile);
  const pods = existsSync(names.dir) ? safePods(names.dir) : {};
  // Real nodes first: their kubelets, pods, containerd, shims, mounts and cgroups.
  let realProblems: string[] = [];
  if (st?.real) {
    try {
      realProblems = await realDown(st, progress);
    } catch (e) {
      realProblems = [(e as Error).message];
    }
  }
  // Stop the kubelet first so it does not start pods while they are being removed.
  if (st?.kubelet) {
    progress("stopping the kubelet");
    await stopProc(st.kubelet);
  }
  const podList = Object.values(pods);
  if (podList.length) progress(`stopping ${podList.length} pod server(s)`);
  await Promise.all(podList.map((p) => stopProc(p.server, 1000)));
  if (st) {
    progress("stopping agents");
    await Promise.all(st.nodes.map((n) => stopProc(n.agent)));
    await Promise.all(st.nodes.map((n) => stopProc(n.apiProxy, 500)));
    // The bgp backend's BIRD outlives its agent by design: ended here by the PID its PID file
    // records (kernel/bird.ts checks it is that BIRD), and its files go with the node's dir.
    const birds = (await Promise.all(st.nodes.map((n) => stopBird(birdPaths(join(n.dir, "state", "bird")))))).filter(
      (pid) => pid !== null,
    );
    if (birds.length) progress(`stopped BIRD (pid ${birds.join(", ")})`);
    // The racks' FRR routers, by the PIDs their files record (kernel/frr.ts checks each one).
    const frr = (
      await Promise.all([...(st.tors ?? []), ...(st.external ? [st.external] : [])].map((r) => stopRouter(r)))
    ).flat();
    if (frr.length) progress(`stopped FRR (pid ${frr.join(", ")})`);
  }
  if (st?.apiserver) {
    progress("stopping kube-apiserver");
    await stopProc(st.apiserver.proxy, 500);
    await stopProc(st.apiserver.proc);
  }
  if (st) {
    progress("stopping etcd");
    await Promise.all(st.etcd.map((m) => stopProc(m.proc)));
  }
  // Namespaces: what the state and the kubelet recorded, plus any left with the lab's own names
  // (e.g. a pod namespace made just before a crash, before its record reached the disk).
  const own = new RegExp(`^${names.id}-(ul|ext|tor[0-9]+|n[0-9]+|p-.+)$`);
  const recorded = new Set<string>([...(st?.namespaces ?? []), ...podList.map((p) => p.netns)]);
  for (const ns of await listNetns()) if (own.test(ns)) recorded.add(ns);
  // Pods first, then nodes, then the underlay: each veth goes with the namespace holding it.
  const order = [...recorded].sort((a, b) => rank(a, names) - rank(b, names));
  if (order.length) progress(`removing ${order.length} namespace(s)`);
  const refused: string[] = [];
  for (const ns of order) {
    // A lab name bound to the machine's own namespace: emptying it would end every process of
    // the host. Left alone, and down fails saying so.
    if (isHostNetns(netnsPathOf(ns))) {
      refused.push(ns);
      continue;
    }
    const killed = await killNetnsProcesses(ns);
    if (killed) progress(`ended ${killed} leftover process(es) in ${ns}`);
    await deleteNetns(ns);
  }
  if (refused.length) {
    throw new LabError(
      `left ${refused.join(", ")} alone: ${refused.length === 1 ? "it is" : "they are"} the machine's own network namespace (that of PID 1), not a lab namespace; remove the name with \`umount /run/netns/NAME\` after checking what bound it`,
    );
  }
  if (realProblems.length) throw new LabError(`lab down left: ${realProblems.join("; ")}`);
  const hadSomething = st !== undefined || order.length > 0 || existsSync(names.dir);
  rmSync(names.dir, { recursive: true, force: true });
  rmSync(frrRoot(names.dir), { recursive: true, force: true });
  return hadSomething;
}

function rank(ns: string, names: LabNames): number {
  if (ns.startsWith(names.podNetnsPrefix)) return 0;
  if (ns === names.underlayNetns) return 3;
  // ToRs hold their racks' bridges: after the nodes plugged into them, before the fabric.
  if (ns === names.externalNetns || /-tor[0-9]+$/.test(ns)) return 2;
  return 1;
}

function safePods(dir: string): ReturnType<typeof readPods>["pods"] {
  try {
    return readPods(dir).pods;
  } catch {
    return {};
  }
}

/** The running lab's state, or a LabError saying there is none. */
export function requireLab(names: LabNames): LabState {
  const st = readState(names.stateFile);
  if (!st) throw new LabError("no lab is running: start one with `weft lab up`");
  return st;
}

export { agentArgv, netnsPathOf };
