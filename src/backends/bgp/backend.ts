// bgp: native routing through BIRD 2, as Calico does. Each node runs its own BIRD (a daemon that
// outlives the agent) in its network namespace; the agent renders bird.conf from the peer list
// (render.ts, a pure function) and reloads BIRD with `birdc configure` when the text changes. The
// agent installs no route to a peer's pod subnet itself: BIRD learns them over an iBGP full mesh
// and puts them in the kernel (`proto bird`), keeping them there (`persist`) when it or the agent
// restarts. A restarted agent adopts the running BIRD by PID file and socket; it never restarts it.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  birdPaths,
  birdProtocolsAll,
  birdStatus,
  BirdError,
  configureBird,
  findBird,
  flushBirdRoutes,
  listBirdRoutes,
  removeBirdFiles,
  startBird,
  stopBird,
  writeBirdConfig,
  type BirdPaths,
  type BirdProtocolDetail,
} from "../../kernel/bird.js";
import {
  BGP_CONFIGURATION,
  BGP_CONFIGURATION_NAME,
  BGP_KINDS,
  BGP_PEER,
  readBgpObjects,
  UNDERLAY_SUBNETS_KEY,
} from "../../store/bgp-objects.js";
import type { StoredObject } from "../../store/types.js";
import { listRoutes } from "../../kernel/peer-route.js";
import { cidrHas, formatCidr, type Cidr } from "../../net/cidr.js";
import { parseIp, type IpFamily as Family } from "../../net/ip.js";
import { localView, peerViews, type NodeView, type PeerView } from "../common/nodes.js";
import { SerialBackend } from "../common/serial.js";
import { deleteBackendRoutes } from "../common/teardown.js";
import { describeConnected, discoverAll, isDirect, type Underlay } from "../common/underlay.js";
import {
  BackendSetupError,
  type BackendOptions,
  type Change,
  type LocalNode,
  type PeerNode,
  type PeerStatus,
  type SetupResult,
  type SyncReport,
} from "../types.js";
import {
  bgpSettingsProblem,
  DEFAULT_AS,
  DEFAULT_RESTART_SECONDS,
  renderBirdConfig,
  sessionName,
  type BgpSettings,
  type RenderNode,
} from "./render.js";
import { planBgp, type PlanNode } from "./plan.js";

/** The settings a BgpOptions means, defaults filled in; throws BackendSetupError naming a bad field. */
export function bgpSettings(o: BackendOptions["bgp"] = {}): BgpSettings {
  const s = { asNumber: o.asNumber ?? DEFAULT_AS, restartSeconds: o.restartSeconds ?? DEFAULT_RESTART_SECONDS };
  const problem = bgpSettingsProblem(s);
  if (problem) throw new BackendSetupError(problem);
  return s;
}

/** One BGP session as `weft status` shows it. */
export interface BgpSession {
  readonly peer: string;
  readonly address: string;
  /** BIRD's protocol state ("up", "start", ...) and BGP state ("Established", "Active", ...). */
  readonly state: string;
  readonly info: string;
  readonly since: string;
  readonly imported: number;
  readonly exported: number;
}

/** BIRD's "2026-12-08 02:20:00" (timeformat protocol iso long, local time) as ISO 8601; undefined otherwise. */
export function birdTimeToIso(since: string): string | undefined {
  if (!/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}/.test(since)) return undefined;
  const t = new Date(since.replace(" ", "T"));
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}

export class BgpBackend extends SerialBackend {
  readonly name = "bgp" as const;
  private readonly settings: BgpSettings;
  private local: NodeView | null = null;
  private underlays = new Map<Family, Underlay>();
  /** Peer name per session (protocol) name, from the last rendered config. */
  private sessionPeers: ReadonlyMap<string, { peer: string; address: string }> = new Map();
  /** The BGP objects as the agent's watch last passed them. */
  private objects = new Map<string, readonly StoredObject[]>();
  readonly objectKinds = BGP_KINDS;

  constructor(opts: BackendOptions = {}) {
    super(opts);
    // Bad settings never reach BIRD: refused when the backend is made.
    this.settings = bgpSettings(opts.bgp);
  }

  overhead(): number {
    return 0;
  }

  objectsChanged(kind: string, objects: readonly StoredObject[]): void {
    this.objects.set(kind, [...objects]);
  }

  /** BIRD's files: DIR/bird under the backend's state dir. */
  get paths(): BirdPaths {
    if (!this.opts.stateDir)
      throw new BackendSetupError("the bgp backend needs a state directory for BIRD's files (the agent's --state-dir)");
    return birdPaths(join(this.opts.stateDir, "bird"));
  }

  protected async doSetup(local: LocalNode): Promise<SetupResult> {
    const node = localView(local);
    const paths = this.paths;
    this.underlays = await discoverAll(this.ctx, node);
    this.local = node;
    const changes: Change[] = [];
    // Peer routes another backend left on this node would shadow BIRD's (they have a lower metric).
    for (const r of await listRoutes(this.ctx, this.proto))
      changes.push({ action: "delete", object: "route", detail: `${r.dst} via ${r.via} dev ${r.dev}` });
    if (changes.length) await deleteBackendRoutes(this.ctx, this.proto);
    // A running BIRD (the agent restarted) is adopted as it is: its config is the last one the
    // agent wrote, and the first sync rewrites it only if the peers changed meanwhile.
    if ((await findBird(paths)) === null) {
      const config = await readFile(paths.config, "utf8").catch(() => null);
      // No config yet: start with this node alone; else BIRD comes back with the peers it had,
      // which lets graceful restart bring every session (and its routes) back unchanged.
      if (config === null) await writeBirdConfig(paths, this.render(node, []));
      changes.push(await this.start(paths));
    }
    const podMtu = this.opts.mtu ?? Math.min(...[...this.underlays.values()].map((u) => u.mtu));
    // The underlay subnets, for `weft apply`'s check that a BGPPeer's router is on them.
    const subnets = [...this.underlays.values()].flatMap((u) => u.connected.map(formatCidr)).join(",");
    return { data: { as: this.settings.asNumber, [UNDERLAY_SUBNETS_KEY]: subnets }, podMtu, changes };
  }

  /** Starts BIRD; in graceful-restart recovery when a previous BIRD's routes are still in the kernel. */
  private async start(paths: BirdPaths): Promise<Change> {
    // Also when the previous BIRD died without a clean stop (its PID file is left): its peers keep
    // our routes as stale, and a new BIRD that does not say it kept forwarding (the F bit that -R
    // sets) makes them drop those at once, before it announces them again.
    const recover = (await listBirdRoutes(this.ctx)).length > 0 || existsSync(paths.pidfile);
    const pid = await startBird(paths, { ...(this.ctx.netns ? { netns: this.ctx.netns } : {}), recover });
    return {
      action: "add",
      object: "daemon",
      detail: `bird pid ${pid}${recover ? " (graceful-restart recovery: kept the previous BIRD's routes)" : ""}`,
    };
  }

  private render(local: NodeView, peers: readonly RenderNode[]): string {
    return renderBirdConfig({ local, peers, settings: this.settings, logFile: this.paths.log });
  }

  /** A peer as the mesh sees it: only the pod families it can be peered for directly; why not, for the rest. */
  private meshPeer(peer: PeerView): { node: RenderNode; status: PeerStatus } {
    const errors: string[] = [];
    const paths: Record<string, "bgp"> = {};
    const underlay = new Map<Family, string>();
    const pods = new Map<Family, Cidr>();
    for (const [f, net] of peer.pods) {
      const u = this.underlays.get(f);
      const pa = peer.underlay.get(f);
      const why =
        u === undefined
          ? `this node has no IPv${f} underlay address`
          : pa === undefined
            ? `it has no IPv${f} underlay address`
            : !isDirect(u, pa)
              ? `its underlay address ${pa} is not on this node's subnet (${describeConnected(u)})`
              : null;
      if (why !== null || pa === undefined) {
        errors.push(
          `peer ${peer.name}: IPv${f} pods not routed: ${why}; the BGP mesh peers nodes on one L2 segment (IPv${f} sessions run over the IPv${f} underlay)`,
        );
        continue;
      }
      underlay.set(f, pa);
      pods.set(f, net);
      paths[formatCidr(net)] = "bgp";
    }
    // A session also carries our own subnet to a peer that has none of that family.
    for (const [f, pa] of peer.underlay) {
      const u = this.underlays.get(f);
      if (!underlay.has(f) && u && isDirect(u, pa) && this.local?.pods.has(f)) underlay.set(f, pa);
    }
    return {
      node: { name: peer.name, underlay, pods },
      status: { name: peer.name, ok: errors.length === 0, paths, errors },
    };
  }

  /** Whether an address is on one of this node's connected underlay subnets. */
  private connected(f: Family, address: string): boolean {
    const a = parseIp(address);
    const u = this.underlays.get(f);
    return !!a && !!u && u.connected.some((c) => cidrHas(c, a));
  }

  protected async doSync(peers: readonly PeerNode[]): Promise<SyncReport> {
    const local = this.local;
    if (!local) throw new Error("bgp: syncPeers() called before setup()");
    const paths = this.paths;
    const reserved = [...this.underlays.values()].flatMap((u) => u.connected);
    const { valid, rejected } = peerViews(local, peers, reserved);
    const mesh = valid.map((p) => this.meshPeer(p));
    const changes: Change[] = [];
    const errors: string[] = [];
    const labels = new Map(peers.map((p) => [p.name, p.labels]));
    const withLabels = (n: RenderNode): PlanNode => {
      const l = labels.get(n.name);
      return l ? { ...n, labels: l } : n;
    };
    const config = (this.objects.get(BGP_CONFIGURATION) ?? []).find((o) => o.metadata.name === BGP_CONFIGURATION_NAME);
    const objects = readBgpObjects(
      config,
      this.objects.get(BGP_PEER) ?? [],
      // Peer addresses are checked against this node's own subnets in the plan.
      { clusterCIDRs: this.opts.clusterCIDRs ?? [], nodes: [] },
      this.settings.asNumber,
    );
    const plan = planBgp({
      local: withLabels(local),
      nodes: valid.map(withLabels),
      meshNodes: mesh.map((m) => m.node),
      objects,
      connected: (f, a) => this.connected(f, a),
    });
    errors.push(...plan.problems);
    const text = renderBirdConfig({
      local: plan.local,
      peers: plan.meshPeers,
      settings: {
        asNumber: objects.config.asNumber,
        restartSeconds: config ? objects.config.gracefulRestartSeconds : this.settings.restartSeconds,
      },
      logFile: paths.log,
      sessions: plan.sessions,
      announce: plan.announce,
      bfd: plan.bfd,
      ...(plan.rrClusterId !== undefined ? { rrClusterId: plan.rrClusterId } : {}),
    });
    const meshPeers = new Map(
      plan.meshPeers.flatMap((n) =>
        [...n.underlay.values()].map((a) => [sessionName(a), { peer: n.name, address: a }]),
      ),
    );
    this.sessionPeers = new Map([...meshPeers, ...plan.sessionPeers]);
    try {
      const changed = await writeBirdConfig(paths, text);
      if ((await findBird(paths)) === null) changes.push(await this.start(paths));
      else if (changed) {
        await configureBird(paths);
        changes.push({
          action: "replace",
          object: "daemon",
          detail: `bird.conf reloaded (${plan.meshPeers.length} mesh peers, ${plan.sessions.length} BGPPeer sessions)`,
        });
      }
    } catch (e) {
      if (!(e instanceof BirdError)) throw e;
      errors.push(e.message);
    }
    // What BIRD says of each session now (a session opened by this reload shows up as it comes up
    // at the next sync); `weft status` shows them.
    const daemon = await birdStatus(paths);
    const sessions = daemon.ok
      ? await this.sessions().catch((e: unknown) => {
          errors.push(`could not read BIRD's sessions: ${e instanceof Error ? e.message : String(e)}`);
          return [];
        })
      : [];
    if (!daemon.ok) errors.push(`BIRD is not answering: ${daemon.detail}`);
    // With the mesh off, peers' routes come over BGPPeer sessions (a ToR, a route reflector) from
    // anywhere: a peer on another subnet is no error then.
    const statuses = objects.config.nodeToNodeMesh
      ? mesh.map((m) => m.status)
      : valid.map((p) => ({
          name: p.name,
          ok: true,
          paths: Object.fromEntries([...p.pods.values()].map((c) => [formatCidr(c), "bgp" as const])),
          errors: [],
        }));
    return {
      peers: [...statuses, ...rejected],
      changes,
      errors,
      sessions: sessions.map((x) => {
        const since = birdTimeToIso(x.since);
        return {
          peer: x.peer,
          address: x.address,
          state: x.info.split(" ")[0] || x.state,
          ...(since ? { since } : {}),
          imported: x.imported,
          exported: x.exported,
        };
      }),
      daemon: { name: "bird", ...daemon },
    };
  }

  /** The BGP sessions as BIRD reports them (`birdc show protocols all`). */
  async sessions(): Promise<BgpSession[]> {
    const rows: BirdProtocolDetail[] = await birdProtocolsAll(this.paths);
    return rows
      .filter((r) => r.proto === "BGP")
      .map((r) => {
        const who = this.sessionPeers.get(r.name);
        return {
          peer: who?.peer ?? r.name,
          address: who?.address ?? r.neighbor ?? "",
          state: r.state,
          info: r.info,
          since: r.since,
          imported: r.imported,
          exported: r.exported,
        };
      });
  }

  protected async doTeardown(): Promise<void> {
    // BIRD's `persist` leaves its routes behind on purpose; here the node leaves for good.
    if (this.opts.stateDir) {
      const paths = this.paths;
      await stopBird(paths);
      await removeBirdFiles(paths);
    }
    await flushBirdRoutes(this.ctx);
    await deleteBackendRoutes(this.ctx, this.proto);
    this.local = null;
  }
}
