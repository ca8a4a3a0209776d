// `weft uninstall`: what is left of weft on a node after its DaemonSet is deleted, removed. Run in
// the node's network namespace with no agent running (it takes the agent's namespace lock, so an
// agent cannot start meanwhile). In order: the conflist (runtimes stop giving new pods weft's
// network), the plugin binaries, weft's nft tables (policy, masquerade: every table named weft*),
// the routes to peers' pod subnets (weft's route protocol), the vxlan device and the host veths of
// pods still wired (those pods lose their network: drain the node first), then the state directory,
// the DEL queue and the socket's directory if that leaves it empty. Sysctls stay (forwarding may
// serve other things on the node).
import { existsSync, readdirSync, rmdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { connect } from "node:net";
import { basename, dirname, join, resolve } from "node:path";
import { DEFAULT_ROUTE_PROTOCOL } from "../backends/types.js";
import { deleteBackendRoutes } from "../backends/common/teardown.js";
import { CONFLIST_NAME, FULL_SUFFIX, PLUGIN_NAME } from "../cni-install/index.js";
import { inHostNetns } from "../kernel/nsfile.js";
import { listRoutes } from "../kernel/peer-route.js";
import { deleteLinkIfPresent, deleteNftTable, listLinks, listNftTables, type NftTableRef } from "../kernel/teardown.js";
import { delQueueDir } from "../plugin/del-queue.js";
import { lockNetns } from "./locks.js";
import { HOST_IF_PATTERN } from "./naming.js";

/** Refused before anything was changed; the message says why and what to do. */
export class UninstallRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UninstallRefused";
  }
}

export interface UninstallOptions {
  binDir: string;
  confDir: string;
  stateDir: string;
  socket: string;
  /** Act; without it only the plan is returned. */
  yes: boolean;
  /** This is a node's own network namespace (that of PID 1): allowed only when set. */
  realNode: boolean;
}

export interface UninstallPlan {
  files: string[];
  nftTables: NftTableRef[];
  routes: string[];
  vxlanLinks: string[];
  /** Host veths of pods still wired: they lose their network. */
  podLinks: string[];
  dirs: string[];
}

/** weft's VTEP: weft.<vni> (src/backends/vxlan/config.ts). */
const VXLAN_DEVICE = /^weft\.\d+$/;
/** The policy table is "weft"; every table weft makes starts so. */
const NFT_TABLE = /^weft/;

export async function uninstall(o: UninstallOptions): Promise<UninstallPlan> {
  if (!o.realNode && inHostNetns())
    throw new UninstallRefused(
      "refusing to change the machine's own network namespace (that of PID 1) without --real-node: on a node weft was installed on, pass --real-node",
    );
  const socket = resolve(o.socket);
  if (await answers(socket))
    throw new UninstallRefused(
      `a weft agent is running on ${socket}: delete weft's DaemonSet (kubectl delete -f deploy/weft.yaml) or stop the agent first`,
    );
  const stateDir = resolve(o.stateDir);
  checkStateDir(stateDir);
  // The agent's own lock: refused while an agent (on any socket) serves this namespace, and no
  // agent can start while the kernel state is taken apart.
  const lock = await lockNetns({ socket, stateDir }).catch((e: unknown) => {
    throw new UninstallRefused(e instanceof Error ? e.message : String(e));
  });
  try {
    const plan = await makePlan(o, socket, stateDir);
    if (o.yes) await carryOut(plan, socket);
    return plan;
  } finally {
    await lock.release();
  }
}

async function makePlan(o: UninstallOptions, socket: string, stateDir: string): Promise<UninstallPlan> {
  const bin = resolve(o.binDir);
  const files = [
    join(resolve(o.confDir), CONFLIST_NAME),
    join(bin, PLUGIN_NAME),
    join(bin, PLUGIN_NAME + FULL_SUFFIX),
    socket,
  ].filter((f) => existsSync(f));
  const links = await listLinks();
  return {
    files,
    nftTables: (await listNftTables()).filter((t) => NFT_TABLE.test(t.name)),
    routes: (await listRoutes({}, DEFAULT_ROUTE_PROTOCOL)).map((r) => r.dst),
    vxlanLinks: links.filter((l) => l.kind === "vxlan" && VXLAN_DEVICE.test(l.name)).map((l) => l.name),
    podLinks: links.filter((l) => l.kind === "veth" && HOST_IF_PATTERN.test(l.name)).map((l) => l.name),
    dirs: [stateDir, delQueueDir(socket)].filter((d) => existsSync(d)),
  };
}

async function carryOut(plan: UninstallPlan, socket: string): Promise<void> {
  // The conflist first: from here on a runtime gives no new pod weft's network.
  for (const f of plan.files) await rm(f, { force: true });
  for (const t of plan.nftTables) await deleteNftTable(t);
  await deleteBackendRoutes({}, DEFAULT_ROUTE_PROTOCOL);
  for (const l of [...plan.podLinks, ...plan.vxlanLinks]) await deleteLinkIfPresent(l);
  for (const d of plan.dirs) {
    if (!existsSync(d)) continue;
    for (const e of readdirSync(d)) await rm(join(d, e), { recursive: true, force: true });
    removeDir(d);
  }
  // The socket's directory only when nothing else is in it (it may be a shared one such as /run).
  const sockDir = dirname(socket);
  if (existsSync(sockDir) && readdirSync(sockDir).length === 0) removeDir(sockDir);
}

/** An empty directory goes; one that is a mount point (weft's image run with the host's dirs bound in) stays. */
function removeDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EBUSY") throw e;
  }
}

/** A state dir to remove recursively must look like weft's: never "/" or a directory of something else. */
function checkStateDir(dir: string): void {
  if (!existsSync(dir)) return;
  if (dir === "/" || dirname(dir) === "/")
    throw new UninstallRefused(`--state-dir ${dir}: refusing to remove a top-level directory`);
  const entries = readdirSync(dir);
  const weftish =
    basename(dir).includes("weft") || entries.length === 0 || entries.some((e) => e.startsWith("ipam.db"));
  if (!weftish)
    throw new UninstallRefused(
      `--state-dir ${dir}: it does not look like a weft agent's state directory (no ipam.db); check the path`,
    );
}

/** Whether something accepts connections on the unix socket. */
function answers(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((r) => {
    const c = connect(path);
    c.once("connect", () => {
      c.destroy();
      r(true);
    });
    c.once("error", () => r(false));
  });
}
