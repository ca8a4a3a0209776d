// The BGP objects (issue 12; the shape is /work/notes/bgp-contract.md): BGPConfiguration (one,
// named "default") and BGPPeer, both cluster-scoped, apiVersion weft.dev/v1. Stored like the other
// kinds (KV stores: <prefix>/objects/BGPPeer/<name>; Kubernetes: CRDs from deploy/weft.yaml).
// Checked here in two steps, every error naming the object and the field:
//   - checkBGPConfiguration / checkBGPPeer: the object alone (types, ranges, exclusive fields,
//     addresses, selectors, prefixes among themselves), strict about unknown fields;
//   - bgpContextProblems: against the cluster (prefixes vs the cluster CIDRs, a peer address vs the
//     selected nodes' underlay subnets where they publish them).
// `weft apply` runs both before writing; the agent runs them again on what it reads (an object
// written around the CLI, e.g. by kubectl) and leaves a bad one out of bird.conf, with the reason
// in its status.
import { parseSelectorText, selectorMatches, type FieldError, type LabelSelector } from "../k8s/index.js";
import { cidrHas, cidrsOverlap, formatCidr, parseCidr, type Cidr } from "../net/cidr.js";
import { formatIp, parseIp, type IpFamily } from "../net/ip.js";
import type { NodeInfo, StoredObject } from "./types.js";

export const BGP_API_VERSION = "weft.dev/v1";
export const BGP_CONFIGURATION = "BGPConfiguration";
export const BGP_PEER = "BGPPeer";
export const BGP_KINDS = [BGP_CONFIGURATION, BGP_PEER] as const;
/** The one BGPConfiguration a cluster has. */
export const BGP_CONFIGURATION_NAME = "default";

export const DEFAULT_BGP_AS = 64512;
export const DEFAULT_GRACEFUL_RESTART_SECONDS = 120;
export const DEFAULT_BFD = { intervalMs: 100, multiplier: 3 } as const;
export const MAX_AS = 4294967295;
/** BIRD's BFD intervals: 1 ms .. 1 h would parse; below 10 ms no kernel keeps up, above 60 s it is no longer BFD. */
export const BFD_INTERVAL_RANGE = [10, 60_000] as const;
export const BFD_MULTIPLIER_RANGE = [1, 255] as const;
/** RFC 4724's restart time is a 12-bit field. */
export const GRACEFUL_RESTART_RANGE = [1, 4095] as const;
/** How `weft get` prints a password. */
export const PASSWORD_MASK = "***";
/** Key of the bgp backend's published data that holds the node's underlay subnets (comma list). */
export const UNDERLAY_SUBNETS_KEY = "underlaySubnets";

// ---- what users write ----------------------------------------------------------------------------

export interface BGPNodeOverride {
  node: string;
  asNumber?: number;
  routerId?: string;
  routeReflectorClusterId?: string;
}

export interface BGPConfigurationSpec {
  asNumber?: number;
  nodeToNodeMesh?: boolean;
  announce?: { podCIDRs?: boolean; prefixes?: string[] };
  bfd?: { intervalMs?: number; multiplier?: number };
  gracefulRestartSeconds?: number;
  nodes?: BGPNodeOverride[];
}

export interface BGPPeerSpec {
  node?: string;
  nodeSelector?: string;
  peerAddress?: string;
  asNumber?: number;
  peerSelector?: string;
  password?: string;
  bfd?: boolean;
  gracefulRestart?: boolean;
  routeReflectorClient?: boolean;
}

// ---- what the agent renders from (defaults filled in, parsed) -------------------------------------

export interface BgpNodeSettings {
  readonly asNumber?: number;
  readonly routerId?: string;
  readonly routeReflectorClusterId?: string;
}

export interface BgpClusterConfig {
  readonly asNumber: number;
  readonly nodeToNodeMesh: boolean;
  readonly announcePodCIDRs: boolean;
  /** Canonical CIDR texts. */
  readonly prefixes: readonly string[];
  readonly bfd: { readonly intervalMs: number; readonly multiplier: number };
  readonly gracefulRestartSeconds: number;
  readonly nodes: ReadonlyMap<string, BgpNodeSettings>;
}

export type BgpPeerTarget =
  | { readonly kind: "external"; readonly address: string; readonly asNumber: number }
  | { readonly kind: "nodes"; readonly selector: LabelSelector; readonly text: string };

export interface BgpPeerConfig {
  readonly name: string;
  /** Which nodes open the session: a name, a selector, or (both absent) every node. */
  readonly node?: string;
  readonly nodeSelector?: LabelSelector;
  readonly peer: BgpPeerTarget;
  readonly password?: string;
  readonly bfd: boolean;
  readonly gracefulRestart: boolean;
  readonly routeReflectorClient: boolean;
}

// ---- checking ----------------------------------------------------------------------------------

export type Checked<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const show = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : String(JSON.stringify(v)));
const DNS_SUBDOMAIN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

class Errs {
  readonly list: FieldError[] = [];
  add(path: string, message: string): void {
    this.list.push({ path, message });
  }
}

function unknownFields(e: Errs, v: Record<string, unknown>, known: readonly string[], path: string): void {
  for (const k of Object.keys(v))
    if (!known.includes(k)) e.add(`${path}.${k}`, `unknown field (known: ${known.join(", ")})`);
}

function asNumber(e: Errs, v: unknown, path: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_AS) {
    e.add(path, `${show(v)} is not an AS number (1..${MAX_AS})`);
    return undefined;
  }
  return v;
}

function intIn(
  e: Errs,
  v: unknown,
  path: string,
  [lo, hi]: readonly [number, number],
  unit: string,
): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
    e.add(path, `${show(v)} is out of range: an integer ${lo}..${hi}${unit}`);
    return undefined;
  }
  return v;
}

function bool(e: Errs, v: unknown, path: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") {
    e.add(path, `${show(v)} is not true or false`);
    return undefined;
  }
  return v;
}

function nodeName(e: Errs, v: unknown, path: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.length > 253 || !DNS_SUBDOMAIN.test(v)) {
    e.add(path, `${show(v)} is not a node name (a DNS-1123 subdomain: lower-case letters, digits, '-' and '.')`);
    return undefined;
  }
  return v;
}

/** A dotted IPv4 address (router ids and cluster ids are 32-bit numbers written that way). */
function ipv4Id(e: Errs, v: unknown, path: string): string | undefined {
  if (v === undefined) return undefined;
  const a = typeof v === "string" ? parseIp(v) : null;
  if (!a || a.family !== 4 || a.value === 0n) {
    e.add(path, `${show(v)} is not an IPv4 address in dotted form (a 32-bit id other than 0.0.0.0, e.g. 10.0.0.1)`);
    return undefined;
  }
  return formatIp(4, a.value);
}

/** A unicast address a BGP session can go to. */
function peerAddress(e: Errs, v: unknown, path: string): string | undefined {
  if (v === undefined) return undefined;
  const a = typeof v === "string" ? parseIp(v) : null;
  if (!a) {
    e.add(path, `${show(v)} is not an IP address`);
    return undefined;
  }
  const text = formatIp(a.family, a.value);
  const bad =
    a.family === 4
      ? a.value === 0n ||
        a.value >> 24n === 127n ||
        a.value >> 28n === 14n ||
        a.value >> 28n === 15n ||
        a.value >> 16n === 0xa9fen
      : a.value === 0n || a.value === 1n || a.value >> 120n === 0xffn || a.value >> 118n === 0x3fan;
  if (bad) {
    e.add(
      path,
      `${text} cannot be a BGP peer: not a unicast address on a network (loopback, link-local, multicast, unspecified or reserved)`,
    );
    return undefined;
  }
  return text;
}

function selector(e: Errs, v: unknown, path: string): { selector: LabelSelector; text: string } | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.trim() === "") {
    e.add(path, `${show(v)} is not a label selector (e.g. "rack=r1" or "role in (rr)")`);
    return undefined;
  }
  const r = parseSelectorText(v);
  if (!r.ok) {
    e.add(path, `${show(v)}: ${r.error}`);
    return undefined;
  }
  return { selector: r.selector, text: v };
}

function checkName(e: Errs, meta: unknown, kind: string): string {
  const name = isMap(meta) ? meta.name : undefined;
  if (typeof name !== "string" || name === "") {
    e.add("metadata.name", "Required value: name is required");
    return "";
  }
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name))
    e.add("metadata.name", `${show(name)} is not a valid name (a DNS-1123 subdomain)`);
  if (kind === BGP_CONFIGURATION && name !== BGP_CONFIGURATION_NAME)
    e.add(
      "metadata.name",
      `${show(name)}: a cluster has one BGPConfiguration and it is named "${BGP_CONFIGURATION_NAME}"`,
    );
  return name;
}

/** Checks a BGPConfiguration on its own; the value is its spec with the defaults filled in. */
export function checkBGPConfiguration(obj: { metadata?: unknown; spec?: unknown }): Checked<BgpClusterConfig> {
  const e = new Errs();
  checkName(e, obj.metadata, BGP_CONFIGURATION);
  const spec = obj.spec ?? {};
  if (!isMap(spec)) {
    e.add("spec", `${show(spec)} is not an object`);
    return { ok: false, errors: e.list };
  }
  unknownFields(e, spec, ["asNumber", "nodeToNodeMesh", "announce", "bfd", "gracefulRestartSeconds", "nodes"], "spec");
  const as = asNumber(e, spec.asNumber, "spec.asNumber");
  const mesh = bool(e, spec.nodeToNodeMesh, "spec.nodeToNodeMesh");
  let podCIDRs: boolean | undefined;
  const prefixes: Cidr[] = [];
  if (spec.announce !== undefined) {
    const an = spec.announce;
    if (!isMap(an)) e.add("spec.announce", `${show(an)} is not an object`);
    else {
      unknownFields(e, an, ["podCIDRs", "prefixes"], "spec.announce");
      podCIDRs = bool(e, an.podCIDRs, "spec.announce.podCIDRs");
      if (an.prefixes !== undefined && !Array.isArray(an.prefixes))
        e.add("spec.announce.prefixes", `${show(an.prefixes)} is not a list of CIDRs`);
      (Array.isArray(an.prefixes) ? (an.prefixes as unknown[]) : []).forEach((p, i) => {
        const path = `spec.announce.prefixes[${i}]`;
        const r = typeof p === "string" ? parseCidr(p) : { ok: false as const, error: `${show(p)} is not a CIDR` };
        if (!r.ok) return e.add(path, r.error);
        const j = prefixes.findIndex((q) => cidrsOverlap(q, r.cidr));
        if (j >= 0)
          return e.add(
            path,
            `${formatCidr(r.cidr)} overlaps ${formatCidr(prefixes[j])} (spec.announce.prefixes[${j}])`,
          );
        prefixes.push(r.cidr);
      });
    }
  }
  let bfd: { intervalMs?: number; multiplier?: number } = {};
  if (spec.bfd !== undefined) {
    if (!isMap(spec.bfd)) e.add("spec.bfd", `${show(spec.bfd)} is not an object`);
    else {
      unknownFields(e, spec.bfd, ["intervalMs", "multiplier"], "spec.bfd");
      bfd = {
        intervalMs: intIn(e, spec.bfd.intervalMs, "spec.bfd.intervalMs", BFD_INTERVAL_RANGE, " ms"),
        multiplier: intIn(e, spec.bfd.multiplier, "spec.bfd.multiplier", BFD_MULTIPLIER_RANGE, ""),
      };
    }
  }
  const gr = intIn(e, spec.gracefulRestartSeconds, "spec.gracefulRestartSeconds", GRACEFUL_RESTART_RANGE, " s");
  const nodes = new Map<string, BgpNodeSettings>();
  if (spec.nodes !== undefined && !Array.isArray(spec.nodes))
    e.add("spec.nodes", `${show(spec.nodes)} is not a list of per-node settings`);
  (Array.isArray(spec.nodes) ? (spec.nodes as unknown[]) : []).forEach((n, i) => {
    const path = `spec.nodes[${i}]`;
    if (!isMap(n)) return e.add(path, `${show(n)} is not an object`);
    unknownFields(e, n, ["node", "asNumber", "routerId", "routeReflectorClusterId"], path);
    if (n.node === undefined) return e.add(`${path}.node`, "Required value: the node these settings are for");
    const name = nodeName(e, n.node, `${path}.node`);
    if (name !== undefined && nodes.has(name))
      e.add(`${path}.node`, `${show(name)} is listed twice: one entry per node`);
    const s: BgpNodeSettings = {
      ...opt("asNumber", asNumber(e, n.asNumber, `${path}.asNumber`)),
      ...opt("routerId", ipv4Id(e, n.routerId, `${path}.routerId`)),
      ...opt("routeReflectorClusterId", ipv4Id(e, n.routeReflectorClusterId, `${path}.routeReflectorClusterId`)),
    };
    if (name !== undefined) nodes.set(name, s);
  });
  if (e.list.length) return { ok: false, errors: e.list };
  return {
    ok: true,
    value: {
      asNumber: as ?? DEFAULT_BGP_AS,
      nodeToNodeMesh: mesh ?? true,
      announcePodCIDRs: podCIDRs ?? true,
      prefixes: prefixes.map(formatCidr),
      bfd: {
        intervalMs: bfd.intervalMs ?? DEFAULT_BFD.intervalMs,
        multiplier: bfd.multiplier ?? DEFAULT_BFD.multiplier,
      },
      gracefulRestartSeconds: gr ?? DEFAULT_GRACEFUL_RESTART_SECONDS,
      nodes,
    },
  };
}

function opt<K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };
}

/** Checks a BGPPeer on its own; the value is what the agent renders from. */
export function checkBGPPeer(obj: { metadata?: unknown; spec?: unknown }): Checked<BgpPeerConfig> {
  const e = new Errs();
  const name = checkName(e, obj.metadata, BGP_PEER);
  const spec = obj.spec;
  if (!isMap(spec)) {
    e.add(
      "spec",
      spec === undefined
        ? "Required value: a peer needs spec.peerAddress and spec.asNumber, or spec.peerSelector"
        : `${show(spec)} is not an object`,
    );
    return { ok: false, errors: e.list };
  }
  unknownFields(
    e,
    spec,
    [
      "node",
      "nodeSelector",
      "peerAddress",
      "asNumber",
      "peerSelector",
      "password",
      "bfd",
      "gracefulRestart",
      "routeReflectorClient",
    ],
    "spec",
  );
  const node = nodeName(e, spec.node, "spec.node");
  const nodeSel = selector(e, spec.nodeSelector, "spec.nodeSelector");
  if (spec.node !== undefined && spec.nodeSelector !== undefined)
    e.add("spec.nodeSelector", "spec.node and spec.nodeSelector exclude each other: give one (neither = every node)");
  const address = peerAddress(e, spec.peerAddress, "spec.peerAddress");
  const as = asNumber(e, spec.asNumber, "spec.asNumber");
  const peerSel = selector(e, spec.peerSelector, "spec.peerSelector");
  const external = spec.peerAddress !== undefined || spec.asNumber !== undefined;
  if (external && spec.peerSelector !== undefined)
    e.add(
      "spec.peerSelector",
      "spec.peerSelector (weft nodes) excludes spec.peerAddress and spec.asNumber (an external router): give one or the other",
    );
  else if (!external && spec.peerSelector === undefined)
    e.add(
      "spec",
      "Required value: give spec.peerAddress and spec.asNumber (an external router), or spec.peerSelector (weft nodes)",
    );
  else if (external && spec.peerAddress === undefined)
    e.add("spec.peerAddress", "Required value: spec.asNumber is given, so is the router's address");
  else if (external && spec.asNumber === undefined)
    e.add("spec.asNumber", "Required value: the external router's AS number (1..4294967295)");
  let password: string | undefined;
  if (spec.password !== undefined) {
    // Never echoed: the message says what is wrong, not what was given.
    const p = spec.password;
    if (typeof p !== "string" || p.length === 0 || p.length > 80)
      e.add("spec.password", "must be a string of 1..80 characters (TCP MD5 key)");
    else if (!/^[\x20-\x7e]+$/.test(p) || /["\\]/.test(p))
      e.add("spec.password", "may hold printable ASCII characters other than '\"' and '\\' only");
    else password = p;
  }
  const bfd = bool(e, spec.bfd, "spec.bfd");
  const gr = bool(e, spec.gracefulRestart, "spec.gracefulRestart");
  const rr = bool(e, spec.routeReflectorClient, "spec.routeReflectorClient");
  if (rr && external)
    e.add(
      "spec.routeReflectorClient",
      "only weft nodes (spec.peerSelector) can be route-reflector clients of a weft node",
    );
  if (e.list.length) return { ok: false, errors: e.list };
  const peer: BgpPeerTarget =
    peerSel !== undefined
      ? { kind: "nodes", selector: peerSel.selector, text: peerSel.text }
      : { kind: "external", address: address as string, asNumber: as as number };
  return {
    ok: true,
    value: {
      name,
      ...(node !== undefined ? { node } : {}),
      ...(nodeSel !== undefined ? { nodeSelector: nodeSel.selector } : {}),
      peer,
      ...(password !== undefined ? { password } : {}),
      bfd: bfd ?? false,
      gracefulRestart: gr ?? true,
      routeReflectorClient: rr ?? false,
    },
  };
}

/** What checking an object against the cluster needs to know of it. */
export interface BgpClusterContext {
  readonly clusterCIDRs: readonly string[];
  /** The live nodes (their names, addresses, labels and published underlay subnets). */
  readonly nodes: readonly NodeInfo[];
}

/** A node's labels as selectors see them: its own (Kubernetes store) plus kubernetes.io/hostname. */
export function nodeLabels(n: Pick<NodeInfo, "name" | "labels">): Record<string, string> {
  return { "kubernetes.io/hostname": n.name, ...(n.labels ?? {}) };
}

/** Whether a peer's session is opened by this node (its node / nodeSelector side). */
export function peerSelectsNode(p: BgpPeerConfig, n: Pick<NodeInfo, "name" | "labels">): boolean {
  if (p.node !== undefined) return p.node === n.name;
  if (p.nodeSelector !== undefined) return selectorMatches(p.nodeSelector, nodeLabels(n));
  return true;
}

/**
 * The underlay subnets a node published, or undefined when it published none. The agent publishes
 * its backend's setup data as JSON under backendData["backend"] (src/agent/published.ts); the bgp
 * backend puts `underlaySubnets` (a comma list) in it.
 */
export function underlaySubnets(n: Pick<NodeInfo, "backendData">): Cidr[] | undefined {
  let text: unknown;
  try {
    const data = JSON.parse(n.backendData.backend ?? "{}") as Record<string, unknown>;
    text = data[UNDERLAY_SUBNETS_KEY];
  } catch {
    return undefined;
  }
  if (typeof text !== "string") return undefined;
  return text
    .split(",")
    .map((s) => parseCidr(s.trim()))
    .flatMap((r) => (r.ok ? [r.cidr] : []));
}

/**
 * Checks an object against the cluster: announced prefixes and peer addresses must not overlap the
 * cluster CIDRs; an external peer's address must lie in an underlay subnet of every selected node
 * that publishes its subnets (nodes that have not yet published theirs are checked by their agent).
 */
export function bgpContextProblems(
  kind: string,
  value: BgpClusterConfig | BgpPeerConfig,
  ctx: BgpClusterContext,
): FieldError[] {
  const out: FieldError[] = [];
  const cluster = ctx.clusterCIDRs.flatMap((c) => {
    const r = parseCidr(c);
    return r.ok ? [r.cidr] : [];
  });
  if (kind === BGP_CONFIGURATION) {
    const cfg = value as BgpClusterConfig;
    cfg.prefixes.forEach((p, i) => {
      const c = parseCidr(p);
      if (!c.ok) return;
      const hit = cluster.find((k) => cidrsOverlap(k, c.cidr));
      if (hit)
        out.push({
          path: `spec.announce.prefixes[${i}]`,
          message: `${p} overlaps the cluster CIDR ${formatCidr(hit)} (pod subnets are announced by announce.podCIDRs)`,
        });
    });
    return out;
  }
  const peer = value as BgpPeerConfig;
  if (peer.peer.kind !== "external") return out;
  const address = peer.peer.address;
  const addr = parseIp(address);
  if (!addr) return out;
  const inCluster = cluster.find((k) => cidrHas(k, addr));
  if (inCluster)
    out.push({
      path: "spec.peerAddress",
      message: `${address} is inside the cluster CIDR ${formatCidr(inCluster)}: a BGP peer is a router on the underlay`,
    });
  const selected = ctx.nodes.filter((n) => peerSelectsNode(peer, n));
  const own = selected.find((n) => n.addresses.includes(address));
  if (own)
    out.push({
      path: "spec.peerAddress",
      message: `${address} is node ${own.name}'s own address: peer with weft nodes by spec.peerSelector`,
    });
  for (const n of selected) {
    const nets = underlaySubnets(n);
    if (nets === undefined || nets.some((c) => cidrHas(c, addr))) continue;
    const fam = nets.filter((c) => c.family === (addr.family as IpFamily));
    out.push({
      path: "spec.peerAddress",
      message: `${address} is not in an underlay subnet of node ${n.name} (${fam.length ? fam.map(formatCidr).join(", ") : `it has no IPv${addr.family} subnet`}): select only nodes that reach the router directly (spec.node or spec.nodeSelector)`,
    });
  }
  return out;
}

/** "BGPPeer tor-r1: spec.asNumber: 4294967296 is not an AS number (1..4294967295); ...". */
export function describeBgpErrors(kind: string, name: string, errors: readonly FieldError[]): string {
  return `${kind} ${name || "(no name)"}: ${errors.map((x) => `${x.path}: ${x.message}`).join("; ")}`;
}

/** A copy of the object with its password (spec and last-applied annotation) shown as ***. */
export function maskBgpSecrets<T extends { kind: string; spec?: unknown; metadata?: unknown }>(o: T): T {
  if (o.kind !== BGP_PEER) return o;
  const out = structuredClone(o);
  if (isMap(out.spec) && out.spec.password !== undefined) out.spec.password = PASSWORD_MASK;
  const ann = isMap(out.metadata) && isMap(out.metadata.annotations) ? out.metadata.annotations : undefined;
  const last = ann?.["kubectl.kubernetes.io/last-applied-configuration"];
  if (ann && typeof last === "string") {
    try {
      const j = JSON.parse(last) as { spec?: Record<string, unknown> };
      if (j.spec && j.spec.password !== undefined) j.spec.password = PASSWORD_MASK;
      ann["kubectl.kubernetes.io/last-applied-configuration"] = JSON.stringify(j) + "\n";
    } catch {
      delete ann["kubectl.kubernetes.io/last-applied-configuration"];
    }
  }
  return out;
}

/** The stored BGP objects, checked: what the agent renders, and what it leaves out with why. */
export interface BgpObjects {
  readonly config: BgpClusterConfig;
  readonly peers: readonly BgpPeerConfig[];
  /** One line per object left out (never with a password in it). */
  readonly problems: readonly string[];
}

/**
 * The BGPConfiguration and BGPPeers as stored, checked again (kubectl may write around `weft
 * apply`): a bad one is left out, a bad configuration falls back to the defaults (and the settings'
 * AS), and each is reported. `defaultAs` is the cluster settings' bgp.asNumber.
 */
export function readBgpObjects(
  config: StoredObject | undefined,
  peers: readonly StoredObject[],
  ctx: BgpClusterContext,
  defaultAs = DEFAULT_BGP_AS,
): BgpObjects {
  const problems: string[] = [];
  let cfg: BgpClusterConfig | undefined;
  if (config) {
    const c = checkBGPConfiguration(config);
    const errs = c.ok ? bgpContextProblems(BGP_CONFIGURATION, c.value, ctx) : c.errors;
    if (c.ok && errs.length === 0) {
      const spec = isMap(config.spec) ? config.spec : {};
      cfg = spec.asNumber === undefined ? { ...c.value, asNumber: defaultAs } : c.value;
    } else
      problems.push(`${describeBgpErrors(BGP_CONFIGURATION, config.metadata.name, errs)} (left out: defaults used)`);
  }
  cfg ??= {
    asNumber: defaultAs,
    nodeToNodeMesh: true,
    announcePodCIDRs: true,
    prefixes: [],
    bfd: { ...DEFAULT_BFD },
    gracefulRestartSeconds: DEFAULT_GRACEFUL_RESTART_SECONDS,
    nodes: new Map(),
  };
  const out: BgpPeerConfig[] = [];
  for (const o of peers) {
    const c = checkBGPPeer(o);
    const errs = c.ok ? bgpContextProblems(BGP_PEER, c.value, ctx) : c.errors;
    if (c.ok && errs.length === 0) out.push(c.value);
    else problems.push(`${describeBgpErrors(BGP_PEER, o.metadata.name, errs)} (left out)`);
  }
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { config: cfg, peers: out, problems };
}
