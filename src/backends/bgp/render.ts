// bird.conf as a pure function of (this node, its BGP peers, the BGP settings): the same input
// always gives the same bytes, so the agent rewrites the file and reloads BIRD only when something
// that matters changed (golden files in testdata/ pin the output). The shape follows Calico's
// bird.cfg.template, in BIRD 2 channel syntax:
//   - kernel protocol per pod family: `persist` (routes stay in the kernel while BIRD or the agent
//     restarts), graceful restart, `learn off`, and an export filter that lets only BGP routes for
//     the peers' pod subnets into the kernel;
//   - this node's pod subnets originated from a static blackhole route, exported to the mesh and
//     nowhere else (never node /32s, never a route learnt from a peer);
//   - a full iBGP mesh, one session per peer and underlay family, the node with the higher address
//     passive so each session is opened from one side only (Calico's cure for a graceful-restart race).
import { hash64 } from "../../net/cidr.js";
import { formatCidr, type Cidr } from "../../net/cidr.js";
import { formatIp, parseIp, type IpFamily as Family } from "../../net/ip.js";

export const DEFAULT_AS = 64512;
/** How long a peer keeps our routes while our BIRD restarts (BGP graceful restart, RFC 4724). */
export const DEFAULT_RESTART_SECONDS = 120;

export interface BgpSettings {
  /** The cluster's AS number (iBGP mesh): 1..4294967295. */
  readonly asNumber: number;
  /** Graceful-restart time announced to peers, seconds (1..4095). */
  readonly restartSeconds: number;
}

export interface RenderNode {
  readonly name: string;
  /** Canonical underlay address per family. */
  readonly underlay: ReadonlyMap<Family, string>;
  /** Pod subnet per family. */
  readonly pods: ReadonlyMap<Family, Cidr>;
  /** The node's own AS (BGPConfiguration spec.nodes[].asNumber); default the cluster's. */
  readonly asNumber?: number;
  /** BGPConfiguration spec.nodes[].routerId; default the IPv4 underlay address. */
  readonly routerId?: string;
}

/** A session from a BGPPeer: to an external router, or to a weft node selected by peerSelector. */
export interface RenderSession {
  /** BIRD protocol name: peer_<address> (external) or node_<address> (in-cluster). */
  readonly name: string;
  /** What it is for, in the config's comment: "BGPPeer tor-r1". */
  readonly why: string;
  readonly family: Family;
  readonly localAddress: string;
  readonly neighbor: string;
  readonly neighborAs: number;
  /** The neighbor is not on a connected subnet (in-cluster peers across subnets). */
  readonly multihop: boolean;
  /** This side listens only (in-cluster sessions: the higher address). */
  readonly passive: boolean;
  readonly password?: string;
  readonly bfd: boolean;
  readonly gracefulRestart: boolean;
  /** This node reflects routes to the neighbor (iBGP only). */
  readonly rrClient: boolean;
}

export interface RenderInput {
  readonly local: RenderNode;
  /** Mesh peers (empty when the mesh is off): only families whose underlay both nodes share are used. */
  readonly peers: readonly RenderNode[];
  readonly settings: BgpSettings;
  /** BIRD's log file (a size-limited file beside the config). */
  readonly logFile: string;
  /** Sessions from BGPPeer objects. */
  readonly sessions?: readonly RenderSession[];
  /** What this node announces: its pod subnets (default yes) and extra prefixes (BGPConfiguration). */
  readonly announce?: { readonly podCIDRs: boolean; readonly prefixes: readonly Cidr[] };
  /** BFD timers for sessions with bfd on. */
  readonly bfd?: { readonly intervalMs: number; readonly multiplier: number };
  /** This node is a route reflector with this cluster id (its rr-client sessions carry it). */
  readonly rrClusterId?: string;
}

/** Checks BGP settings; returns a message naming the field, or null. */
export function bgpSettingsProblem(s: Partial<Record<keyof BgpSettings, unknown>>): string | null {
  const as = s.asNumber;
  if (typeof as !== "number" || !Number.isInteger(as) || as < 1 || as > 4294967295)
    return `bgp.asNumber: ${JSON.stringify(as)} is not an AS number (an integer 1..4294967295, e.g. ${DEFAULT_AS})`;
  const rt = s.restartSeconds;
  if (typeof rt !== "number" || !Number.isInteger(rt) || rt < 1 || rt > 4095)
    return `bgp.restartSeconds: ${JSON.stringify(rt)} is not a graceful-restart time (an integer 1..4095 seconds)`;
  return null;
}

/** The router id: the IPv4 underlay address, else a stable hash of the node name (never 0). */
export function routerId(node: RenderNode): string {
  if (node.routerId !== undefined) return node.routerId;
  const v4 = node.underlay.get(4);
  if (v4 !== undefined) return v4;
  const h = Number(hash64(node.name) & 0xffffffffn) || 1;
  return formatIp(4, BigInt(h));
}

/** A BIRD protocol name for a peer address: mesh_10_200_0_3, mesh_fd00_200__3. */
export function sessionName(peerAddress: string): string {
  return `mesh_${peerAddress.replace(/[.:]/g, "_")}`;
}

/** Whether this node opens the session: the lower address connects, the higher one listens. */
export function isPassive(localAddress: string, peerAddress: string): boolean {
  const a = parseIp(localAddress);
  const b = parseIp(peerAddress);
  if (!a || !b) throw new Error(`not addresses: ${localAddress}, ${peerAddress}`);
  return a.value > b.value;
}

const FAMILIES: readonly Family[] = [4, 6];
const chan = (f: Family) => (f === 4 ? "ipv4" : "ipv6");
// Node names are DNS-1123 in the store; anything else is left out of the config's comments.
const safeName = (n: string) => (/^[a-z0-9][a-z0-9.-]{0,252}$/.test(n) ? n : "(unprintable name)");

// Passwords go into the config inside quotes: checked again here (the object checks refuse them first).
const quotable = (p: string) => /^[\x20-\x7e]{1,80}$/.test(p) && !/["\\]/.test(p);
const BIRD_NAME = /^[a-z][a-z0-9_]{0,63}$/;

export function renderBirdConfig(input: RenderInput): string {
  const { local, settings } = input;
  const problem = bgpSettingsProblem(settings);
  if (problem) throw new Error(problem);
  const localAs = local.asNumber ?? settings.asNumber;
  const peers = [...input.peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const sessions = [...(input.sessions ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const x of sessions) {
    if (!BIRD_NAME.test(x.name)) throw new Error(`session name ${JSON.stringify(x.name)} is not a BIRD symbol`);
    if (x.password !== undefined && !quotable(x.password)) throw new Error(`session ${x.name}: unusable password`);
  }
  const announcePods = input.announce?.podCIDRs ?? true;
  const prefixes = input.announce?.prefixes ?? [];
  const out: string[] = [];
  const line = (s = "") => out.push(s);
  line(`# bird.conf of weft node ${safeName(local.name)}: written by the weft agent, do not edit.`);
  line(`router id ${routerId(local)};`);
  line(`log "${input.logFile}" 1000000 "${input.logFile}.old" { info, warning, error, fatal };`);
  // How long the kernel keeps the previous BIRD's routes after a restart while sessions come back.
  line(`graceful restart wait ${settings.restartSeconds};`);
  // Absolute times in `show protocols`: weft status turns them into session uptimes.
  line("timeformat protocol iso long;");
  line();
  line("protocol device {");
  line("  scan time 10;");
  line("}");
  if (sessions.some((x) => x.bfd)) {
    const b = input.bfd ?? { intervalMs: 100, multiplier: 3 };
    line();
    line(`# BFD for the sessions with bfd on: a dead peer is down after ${b.intervalMs * b.multiplier} ms.`);
    line("protocol bfd weft_bfd {");
    line(`  interface "*" {`);
    line(`    interval ${b.intervalMs} ms;`);
    line(`    multiplier ${b.multiplier};`);
    line("  };");
    line("  multihop {");
    line(`    interval ${b.intervalMs} ms;`);
    line(`    multiplier ${b.multiplier};`);
    line("  };");
    line("}");
  }
  // What this node originates per family: its pod subnet and the extra prefixes (static routes that
  // live only in BIRD), and the only routes any session exports (a reflector adds reflection).
  const originated = new Map<Family, string[]>();
  for (const f of FAMILIES) {
    const c = chan(f);
    const own = local.pods.get(f);
    const extra = prefixes.filter((p) => p.family === f);
    const names: string[] = [];
    if (own && announcePods) {
      line();
      line(
        `# IPv${f}: this node's pod subnet ${formatCidr(own)}, announced from a blackhole route that stays in BIRD.`,
      );
      line(`protocol static weft_pods${f} {`);
      line(`  ${c};`);
      line(`  route ${formatCidr(own)} blackhole;`);
      line("}");
      names.push(`weft_pods${f}`);
    }
    if (extra.length) {
      line();
      line(`# IPv${f}: prefixes every node announces (BGPConfiguration spec.announce.prefixes).`);
      line(`protocol static weft_extra${f} {`);
      line(`  ${c};`);
      for (const p of extra) line(`  route ${formatCidr(p)} blackhole;`);
      line("}");
      names.push(`weft_extra${f}`);
    }
    originated.set(f, names);
    if (!own && !extra.length && !sessions.some((x) => x.family === f)) continue;
    // Never learn a route for what this node itself owns (its pod subnet, its announced prefixes).
    const mine = [...(own ? [own] : []), ...extra].map((n) => `${formatCidr(n)}+`);
    line();
    line(`# Learnt routes are taken, except for what this node owns itself.`);
    line(`filter weft_import${f} {`);
    if (mine.length) line(`  if net ~ [ ${mine.join(", ")} ] then reject;`);
    line("  accept;");
    line("}");
    line();
    line(`# Only this node's own routes are announced: never a node address, never a learnt route.`);
    line(`filter weft_export${f} {`);
    for (const n of names) line(`  if proto = "${n}" then accept;`);
    line("  reject;");
    line("}");
    line();
    line(`# A route reflector also passes what its in-cluster peers announced on to its rr clients.`);
    line(`filter weft_reflect${f} {`);
    for (const n of names) line(`  if proto = "${n}" then accept;`);
    line(`  if source = RTS_BGP && (proto ~ "mesh_*" || proto ~ "node_*") then accept;`);
    line("  reject;");
    line("}");
    line();
    line(`# Only routes learnt over BGP enter the kernel.`);
    line(`filter weft_to_kernel${f} {`);
    line("  if source = RTS_BGP then accept;");
    line("  reject;");
    line("}");
    line();
    line(`protocol kernel weft_kernel${f} {`);
    line(`  ${c} {`);
    line("    import none;");
    line(`    export filter weft_to_kernel${f};`);
    line("  };");
    line("  persist;");
    line("  learn off;");
    line("  graceful restart on;");
    line("  merge paths on;");
    line("  scan time 10;");
    line("}");
  }
  const hasFilters = (f: Family) =>
    local.pods.has(f) || prefixes.some((p) => p.family === f) || sessions.some((x) => x.family === f);
  line();
  line("template bgp weft_mesh {");
  line(`  local as ${localAs};`);
  line("  direct;");
  line("  graceful restart on;");
  line(`  graceful restart time ${settings.restartSeconds};`);
  line("  connect delay time 1;");
  line("  connect retry time 3;");
  line("  error wait time 5, 30;");
  line("}");
  for (const p of peers) {
    for (const f of FAMILIES) {
      if (!sharedFamily(local, p, f) || !hasFilters(f)) continue;
      const la = local.underlay.get(f) as string;
      const pa = p.underlay.get(f) as string;
      const theirs = p.pods.get(f);
      line();
      line(`# node ${safeName(p.name)} over IPv${f}`);
      line(`protocol bgp ${sessionName(pa)} from weft_mesh {`);
      line(`  local ${la} as ${localAs};`);
      line(`  neighbor ${pa} as ${p.asNumber ?? settings.asNumber};`);
      if (isPassive(la, pa)) line("  passive on;");
      line(`  ${chan(f)} {`);
      // A mesh peer is trusted for its own pod subnet only (and the prefixes every node announces).
      const theirsOk = [...(theirs ? [theirs] : []), ...prefixes.filter((x) => x.family === f)].map(formatCidr);
      line(`    import ${theirsOk.length ? `where net ~ [ ${theirsOk.join(", ")} ]` : "none"};`);
      line(`    export filter weft_export${f};`);
      line("    next hop self;");
      line("  };");
      line("}");
    }
  }
  for (const x of sessions) {
    const f = x.family;
    line();
    line(`# ${safeText(x.why)} over IPv${f}`);
    line(`protocol bgp ${x.name} {`);
    line(`  local ${x.localAddress} as ${localAs};`);
    line(`  neighbor ${x.neighbor} as ${x.neighborAs};`);
    line(x.multihop ? "  multihop;" : "  direct;");
    if (x.passive) line("  passive on;");
    if (x.password !== undefined) line(`  password "${x.password}";`);
    if (x.bfd) line("  bfd on;");
    if (x.gracefulRestart) {
      line("  graceful restart on;");
      line(`  graceful restart time ${settings.restartSeconds};`);
    } else line("  graceful restart off;");
    if (x.rrClient) {
      line("  rr client;");
      if (input.rrClusterId !== undefined) line(`  rr cluster id ${input.rrClusterId};`);
    }
    line("  connect delay time 1;");
    line("  connect retry time 3;");
    line("  error wait time 5, 30;");
    line(`  ${chan(f)} {`);
    line(`    import filter weft_import${f};`);
    line(`    export filter ${x.rrClient ? "weft_reflect" : "weft_export"}${f};`);
    // Reflected routes keep the next hop of the node that announced them (on the same L2).
    line(x.rrClient ? "    next hop self ebgp;" : "    next hop self;");
    line("  };");
    line("}");
  }
  return out.join("\n") + "\n";
}

const safeText = (t: string) => t.replace(/[^A-Za-z0-9 ._:/=,()-]/g, "?").slice(0, 200);

/** Whether a session of family f carries anything: both nodes have an f underlay and one has f pods. */
export function sharedFamily(local: RenderNode, peer: RenderNode, f: Family): boolean {
  return local.underlay.has(f) && peer.underlay.has(f) && (local.pods.has(f) || peer.pods.has(f));
}
