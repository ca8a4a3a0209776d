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
}

export interface RenderInput {
  readonly local: RenderNode;
  /** Peers to open sessions with: only families whose underlay both nodes share are used. */
  readonly peers: readonly RenderNode[];
  readonly settings: BgpSettings;
  /** BIRD's log file (a size-limited file beside the config). */
  readonly logFile: string;
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

export function renderBirdConfig(input: RenderInput): string {
  const { local, settings } = input;
  const problem = bgpSettingsProblem(settings);
  if (problem) throw new Error(problem);
  const peers = [...input.peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  const line = (s = "") => out.push(s);
  line(`# bird.conf of weft node ${safeName(local.name)}: written by the weft agent, do not edit.`);
  line(`router id ${routerId(local)};`);
  line(`log "${input.logFile}" 1000000 "${input.logFile}.old" { info, warning, error, fatal };`);
  // How long the kernel keeps the previous BIRD's routes after a restart while sessions come back.
  line(`graceful restart wait ${settings.restartSeconds};`);
  line();
  line("protocol device {");
  line("  scan time 10;");
  line("}");
  const families = FAMILIES.filter((f) => local.pods.has(f));
  for (const f of families) {
    const c = chan(f);
    const own = formatCidr(local.pods.get(f) as Cidr);
    const learnt = peers.flatMap((p) => {
      const n = p.pods.get(f);
      return n && sharedFamily(local, p, f) ? [formatCidr(n)] : [];
    });
    line();
    line(`# IPv${f}: this node's pod subnet ${own}, announced from a blackhole route that stays in BIRD.`);
    line(`protocol static weft_pods${f} {`);
    line(`  ${c};`);
    line(`  route ${own} blackhole;`);
    line("}");
    line();
    line(`# Only BGP routes to the peers' pod subnets enter the kernel.`);
    line(`filter weft_to_kernel${f} {`);
    if (learnt.length) line(`  if source = RTS_BGP && net ~ [ ${learnt.join(", ")} ] then accept;`);
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
  line();
  line("template bgp weft_mesh {");
  line(`  local as ${settings.asNumber};`);
  line("  direct;");
  line("  graceful restart on;");
  line(`  graceful restart time ${settings.restartSeconds};`);
  line("  connect delay time 1;");
  line("  connect retry time 3;");
  line("  error wait time 5, 30;");
  line("}");
  for (const p of peers) {
    for (const f of FAMILIES) {
      if (!sharedFamily(local, p, f)) continue;
      const la = local.underlay.get(f) as string;
      const pa = p.underlay.get(f) as string;
      const theirs = p.pods.get(f);
      const ours = local.pods.get(f);
      if (!theirs && !ours) continue;
      line();
      line(`# node ${safeName(p.name)} over IPv${f}`);
      line(`protocol bgp ${sessionName(pa)} from weft_mesh {`);
      line(`  local ${la} as ${settings.asNumber};`);
      line(`  neighbor ${pa} as ${settings.asNumber};`);
      if (isPassive(la, pa)) line("  passive on;");
      line(`  ${chan(f)} {`);
      line(`    import ${theirs ? `where net = ${formatCidr(theirs)}` : "none"};`);
      line(`    export ${ours ? `where proto = "weft_pods${f}" && net = ${formatCidr(ours)}` : "none"};`);
      line("    next hop self;");
      line("  };");
      line("}");
    }
  }
  return out.join("\n") + "\n";
}

/** Whether a session of family f carries anything: both nodes have an f underlay and one has f pods. */
export function sharedFamily(local: RenderNode, peer: RenderNode, f: Family): boolean {
  return local.underlay.has(f) && peer.underlay.has(f) && (local.pods.has(f) || peer.pods.has(f));
}
