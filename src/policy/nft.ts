// Pure renderer: CompiledModel -> nft 1.0.6 script. Two outputs:
//   renderRuleset(): the whole `table inet weft`, replaced atomically in one `nft -f` transaction
//     (add + delete + define), and
//   renderElementUpdate(): when only set/map elements differ (pod churn, label changes), a script
//     of element deletes and adds, so rules and counters stay as they are.
//
// Layout (all verdicts stay in nftables; per-packet cost does not grow with the policy count):
//   prerouting (raw):  packets from a pod veth must carry a source the host routes back through
//                      that same veth (a reverse-path check: each pod address has a host route
//                      only via its own veth), so anti-spoofing needs no per-pod elements;
//                      only pods with several weft interfaces get (veth, sibling address) elements
//   forward  prio 0:   from a pod veth: established/related accept, invalid drop, then the source
//                      address' egress group via a verdict map (pods not in the map: not isolated)
//   forward  prio 10:  to a pod veth: the same for ingress, keyed by destination address.
// An accept ends only its own base chain, so a pod-to-pod packet on one node passes both checks.
import type { AddrRange } from "../net/cidr.js";
import { formatIp } from "../net/ip.js";
import type {
  CompiledModel,
  CompiledRule,
  Direction,
  ElementChange,
  Family,
  NamedPortElement,
  Protocol,
  RulePeer,
  RulePort,
} from "./model.js";

export interface RenderOptions {
  /** Table name (family inet). Default "weft". */
  table?: string;
  /** Host-side pod interface prefix. Default "wf". */
  podIfPrefix?: string;
  /** NFLOG group for denied packets. Default 100. */
  nflogGroup?: number;
  /** Rate limit of denied-packet logs per isolation group, packets per second. Default 10. */
  logRatePerSecond?: number;
  /**
   * Counter values to start from on a full render (e.g. read with readCounters-style
   * `nft -j list counters` before the reload), so counters stay monotonic across reloads.
   */
  counterValues?: ReadonlyMap<string, { packets: number; bytes: number }>;
}

interface Opts {
  counterValues: ReadonlyMap<string, { packets: number; bytes: number }>;
  table: string;
  prefix: string;
  group: number;
  rate: number;
}

function opts(o: RenderOptions = {}): Opts {
  const table = o.table ?? "weft";
  const prefix = o.podIfPrefix ?? "wf";
  if (!/^[A-Za-z][A-Za-z0-9_]{0,30}$/.test(table))
    throw new Error(`nft table name "${table}" is not a plain identifier`);
  if (!/^[A-Za-z0-9_.-]{1,14}$/.test(prefix))
    throw new Error(`pod interface prefix "${prefix}" is not a valid interface name prefix`);
  const group = o.nflogGroup ?? 100;
  if (!Number.isInteger(group) || group < 0 || group > 65535)
    throw new Error(`NFLOG group ${group} is not in 0..65535`);
  const rate = o.logRatePerSecond ?? 10;
  if (!Number.isInteger(rate) || rate < 1) throw new Error(`log rate ${rate} must be a positive integer`);
  return { table, prefix, group, rate, counterValues: o.counterValues ?? new Map() };
}

/** A named set or map with its elements keyed by element key (value = full element text). */
interface SetDef {
  name: string;
  decl: string[];
  elements: Map<string, string>;
}

interface ChainDef {
  name: string;
  hook?: string;
  rules: string[];
}

export interface Ruleset {
  sets: SetDef[];
  counters: Array<{ name: string; packets: number; bytes: number }>;
  chains: ChainDef[];
}

const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };
const ipKw = (f: Family) => (f === 4 ? "ip" : "ip6");
const addrType = (f: Family) => (f === 4 ? "ipv4_addr" : "ipv6_addr");
const FAMILIES: Family[] = [4, 6];

function rangeText(r: AddrRange): string {
  const a = formatIp(r.family, r.first);
  return r.first === r.last ? a : `${a}-${formatIp(r.family, r.last)}`;
}

function comment(text: string): string {
  return `comment "${text.replace(/[^A-Za-z0-9_.:/[\] -]/g, "_").slice(0, 120)}"`;
}

/** Family-specific match fragments for one peer and one port, or null if they exclude each other. */
function ruleVariants(
  dir: Direction,
  peer: RulePeer,
  port: RulePort,
  model: CompiledModel,
): Array<{ fam: Family | null; peer: string; port: string }> {
  const addrField = dir === "ingress" ? "saddr" : "daddr";
  let peerFams: Array<Family | null>;
  if (peer.kind === "any") peerFams = [null];
  else if (peer.kind === "pods") peerFams = FAMILIES;
  else peerFams = [model.cidrSets.find((c) => c.id === peer.set)!.family];
  const portFams: Array<Family | null> = port.kind === "named" ? FAMILIES : [null];
  const out: Array<{ fam: Family | null; peer: string; port: string }> = [];
  for (const pf of peerFams) {
    for (const qf of portFams) {
      if (pf !== null && qf !== null && pf !== qf) continue;
      const fam = pf ?? qf;
      const peerText =
        peer.kind === "any"
          ? ""
          : peer.kind === "pods"
            ? `${ipKw(fam!)} ${addrField} @${peer.set}_${fam}`
            : `${ipKw(fam!)} ${addrField} @${peer.set}`;
      let portText = "";
      switch (port.kind) {
        case "any":
          break;
        case "protocol":
          portText = `meta l4proto ${PROTO[port.protocol]}`;
          break;
        case "ports": {
          const items = port.ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`));
          portText = `meta l4proto ${PROTO[port.protocol]} th dport ${items.length === 1 ? items[0] : `{ ${items.join(", ")} }`}`;
          break;
        }
        case "named":
          // Named ports resolve on the destination pod: its (address, protocol, port) must be in the set.
          portText = `meta l4proto ${PROTO[port.protocol]} ${ipKw(fam!)} daddr . meta l4proto . th dport @${port.set}_${fam}`;
          break;
      }
      out.push({ fam, peer: peerText, port: portText });
    }
  }
  return out;
}

function ruleLines(rule: CompiledRule, model: CompiledModel): string[] {
  const lines: string[] = [];
  const note = comment(`${rule.policy.namespace}/${rule.policy.name} ${rule.direction}[${rule.index}]`);
  for (const peer of rule.peers) {
    for (const port of rule.ports) {
      for (const v of ruleVariants(rule.direction, peer, port, model)) {
        lines.push([v.peer, v.port, `counter name "${rule.counter}"`, "accept", note].filter(Boolean).join(" "));
      }
    }
  }
  return lines;
}

/** The sets keyed by local pods: sibling sources and the verdict maps (small: local pods only). */
function localSets(model: CompiledModel): SetDef[] {
  const sets: SetDef[] = [];
  const addSet = (name: string, decl: string[], elements: Array<[string, string]>) =>
    sets.push({ name, decl, elements: new Map(elements) });
  for (const f of FAMILIES) {
    // Sources a multi-interface pod's veth may send besides its own (its other interfaces').
    const els = model.siblingSources
      .filter((s) => s.family === f)
      .map((s): [string, string] => {
        const t = `"${s.ifname}" . ${s.addr}`;
        return [t, t];
      });
    addSet(`sib_${f}`, [`type ifname . ${addrType(f)}`], els);
  }
  for (const dir of ["ingress", "egress"] as const) {
    for (const f of FAMILIES) {
      const els: Array<[string, string]> = [];
      for (const lp of model.localPods) {
        const g = lp[dir].group;
        if (!g) continue;
        for (const ip of lp.ips) if (ip.includes(":") === (f === 6)) els.push([ip, `${ip} : jump ${g}`]);
      }
      addSet(`v${dir === "ingress" ? "i" : "e"}_${f}`, [`type ${addrType(f)} : verdict`], els);
    }
  }

  return sets;
}

/** The ruleset as data: sets with their elements, counters, chains with their rules. */
export function buildRuleset(model: CompiledModel, o: RenderOptions = {}): Ruleset {
  const op = opts(o);
  const sets: SetDef[] = [];
  const addSet = (name: string, decl: string[], elements: Array<[string, string]>) =>
    sets.push({ name, decl, elements: new Map(elements) });

  for (const s of model.podSets) {
    for (const f of FAMILIES)
      addSet(
        `${s.id}_${f}`,
        [`type ${addrType(f)}`],
        (f === 4 ? s.v4 : s.v6).map((a) => [a, a]),
      );
  }
  for (const c of model.cidrSets) {
    addSet(
      c.id,
      [`type ${addrType(c.family)}`, "flags interval"],
      c.ranges.map((r) => [rangeText(r), rangeText(r)]),
    );
  }
  for (const n of model.namedPortSets) {
    for (const f of FAMILIES) {
      const els = n.elements
        .filter((e) => e.family === f)
        .map((e): [string, string] => {
          const t = `${e.addr} . ${PROTO[e.protocol]} . ${e.port}`;
          return [t, t];
        });
      addSet(`${n.id}_${f}`, [`type ${addrType(f)} . inet_proto . inet_service`], els);
    }
  }
  sets.push(...localSets(model));

  const pod = `"${op.prefix}*"`;
  const chains: ChainDef[] = [
    {
      name: "spoof_hook",
      hook: "type filter hook prerouting priority -300; policy accept;",
      rules: [`iifname ${pod} jump spoof_check`],
    },
    {
      name: "spoof_check",
      rules: [
        // Link-local and unspecified sources (NDP, DAD, MLD) never get forwarded off the link.
        "ip6 saddr { ::, fe80::/10 } return",
        // A pod with several weft interfaces sends from any of its addresses out of its default
        // route's interface: each of its veths may also carry its other interfaces' addresses.
        // Filled only for such pods; a third pod's veth is never keyed with these addresses.
        "iifname . ip saddr @sib_4 return",
        "iifname . ip6 saddr @sib_6 return",
        // The route back to the source must leave through the veth the packet came in on: a
        // pod's own addresses are routed only via its veth, any other source (another pod's,
        // a remote or made-up one) via some other device. Packets from other nodes (VTEP,
        // underlay) never reach this chain: it is entered only from wf* veths.
        `fib saddr . iif oif missing counter name "spoofed" drop`,
      ],
    },
    {
      name: "egress_hook",
      hook: "type filter hook forward priority 0; policy accept;",
      rules: [`iifname ${pod} jump pod_egress`],
    },
    {
      name: "pod_egress",
      rules: [
        "ct state established,related accept",
        "ct state invalid drop",
        "ip saddr vmap @ve_4",
        "ip6 saddr vmap @ve_6",
      ],
    },
    {
      name: "ingress_hook",
      hook: "type filter hook forward priority 10; policy accept;",
      rules: [`oifname ${pod} jump pod_ingress`],
    },
    {
      name: "pod_ingress",
      rules: [
        "ct state established,related accept",
        "ct state invalid drop",
        "ip daddr vmap @vi_4",
        "ip6 daddr vmap @vi_6",
      ],
    },
  ];
  for (const g of model.groups) {
    const rules = g.policies.map((pid) => {
      const cp = model.policies.find((p) => p.id === pid)!;
      return `jump ${cp[g.direction]!.chain}`;
    });
    rules.push(`counter name "${g.denyCounter}"`);
    rules.push(
      `limit rate ${op.rate}/second burst ${op.rate * 2} packets log prefix "weft deny ${g.direction} ${g.id}: " group ${op.group}`,
    );
    rules.push("drop");
    chains.push({ name: g.chain, rules });
  }
  for (const p of model.policies) {
    for (const side of [p.ingress, p.egress]) {
      if (side) chains.push({ name: side.chain, rules: side.rules.flatMap((r) => ruleLines(r, model)) });
    }
  }
  const counters = model.counters.map((c) => {
    const v = op.counterValues.get(c.name);
    const n = (x: number | undefined) => (Number.isSafeInteger(x) && x! >= 0 ? x! : 0);
    return { name: c.name, packets: n(v?.packets), bytes: n(v?.bytes) };
  });
  return { sets, counters, chains };
}

function formatTable(rs: Ruleset, table: string, withElements: boolean): string {
  const out: string[] = [`table inet ${table} {`];
  for (const s of rs.sets) {
    const isMap = s.decl[0].includes(": verdict");
    out.push(`\t${isMap ? "map" : "set"} ${s.name} {`);
    for (const d of s.decl) out.push(`\t\t${d}`);
    if (withElements && s.elements.size > 0) out.push(`\t\telements = { ${[...s.elements.values()].join(", ")} }`);
    out.push("\t}");
  }
  for (const c of rs.counters) {
    out.push(
      withElements && (c.packets || c.bytes)
        ? `\tcounter ${c.name} {\n\t\tpackets ${c.packets} bytes ${c.bytes}\n\t}`
        : `\tcounter ${c.name} {\n\t}`,
    );
  }
  for (const c of rs.chains) {
    out.push(`\tchain ${c.name} {`);
    if (c.hook) out.push(`\t\t${c.hook}`);
    for (const r of c.rules) out.push(`\t\t${r}`);
    out.push("\t}");
  }
  out.push("}");
  return out.join("\n");
}

/** The whole table as one atomic transaction: create-if-missing, delete, define. */
export function renderRuleset(model: CompiledModel, o: RenderOptions = {}): string {
  const { table } = opts(o);
  return `table inet ${table}\ndelete table inet ${table}\n${formatTable(buildRuleset(model, o), table, true)}\n`;
}

/** Script that removes weft's table (nothing else). */
export function renderDelete(o: RenderOptions = {}): string {
  const { table } = opts(o);
  return `table inet ${table}\ndelete table inet ${table}\n`;
}

/** Parses `nft -j list counters table inet weft` output into values for RenderOptions.counterValues. */
export function parseCounters(json: string): Map<string, { packets: number; bytes: number }> {
  const out = new Map<string, { packets: number; bytes: number }>();
  const doc = JSON.parse(json) as {
    nftables?: Array<{ counter?: { name?: unknown; packets?: unknown; bytes?: unknown } }>;
  };
  for (const item of doc.nftables ?? []) {
    const c = item.counter;
    if (c && typeof c.name === "string" && typeof c.packets === "number" && typeof c.bytes === "number")
      out.set(c.name, { packets: c.packets, bytes: c.bytes });
  }
  return out;
}

/** Number of rules in all chains (for scale checks and status). */
export function countRules(model: CompiledModel, o: RenderOptions = {}): number {
  return buildRuleset(model, o).chains.reduce((n, c) => n + c.rules.length, 0);
}

/**
 * The element changes from `prev` to `next` as an nft script (one transaction), or null when
 * anything but elements differs (then apply renderRuleset(next) instead). "" = nothing to do.
 * Assumes the kernel holds exactly `prev` (as rendered by renderRuleset or earlier updates).
 */
export function renderElementUpdate(prev: CompiledModel, next: CompiledModel, o: RenderOptions = {}): string | null {
  const { table } = opts(o);
  const a = buildRuleset(prev, o);
  const b = buildRuleset(next, o);
  if (formatTable(a, table, false) !== formatTable(b, table, false)) return null;
  const dels: string[] = [];
  const adds: string[] = [];
  for (let i = 0; i < b.sets.length; i++) {
    const before = a.sets[i].elements;
    const after = b.sets[i].elements;
    const gone = [...before].filter(([k, v]) => after.get(k) !== v).map(([k]) => k);
    const added = [...after].filter(([k, v]) => before.get(k) !== v).map(([, v]) => v);
    if (gone.length) dels.push(`delete element inet ${table} ${b.sets[i].name} { ${gone.join(", ")} }`);
    if (added.length) adds.push(`add element inet ${table} ${b.sets[i].name} { ${added.join(", ")} }`);
  }
  const lines = [...dels, ...adds];
  return lines.length ? `${lines.join("\n")}\n` : "";
}

const nameOf = (set: string, family: Family) => `${set}_${family}`;

/**
 * The element changes from `prev` to `next` as an nft script (one transaction; "" = nothing to
 * do), given what an incremental update (IncrementalCompiler) says it touched. Unlike
 * renderElementUpdate it compares only those elements (and the small local-pod sets), so its cost
 * does not grow with the cluster. Assumes the kernel holds exactly `prev` and that `next` differs
 * from it in elements only (as IncrementalCompiler guarantees).
 */
export function renderModelChange(
  prev: CompiledModel,
  next: CompiledModel,
  change: ElementChange,
  o: RenderOptions = {},
): string {
  const { table } = opts(o);
  const dels = new Map<string, Set<string>>();
  const adds = new Map<string, Set<string>>();
  const put = (m: Map<string, Set<string>>, set: string, el: string) => {
    let s = m.get(set);
    if (!s) m.set(set, (s = new Set()));
    s.add(el);
  };
  const podSetsOf = (m: CompiledModel) => new Map(m.podSets.map((s) => [s.id, s]));
  const [pa, pb] = [podSetsOf(prev), podSetsOf(next)];
  const hasAddr = (sorted: readonly string[] | undefined, addr: string) => {
    if (!sorted) return false;
    let lo = 0,
      hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid] < addr) lo = mid + 1;
      else hi = mid;
    }
    return sorted[lo] === addr;
  };
  for (const c of change.podSets) {
    const was = hasAddr(pa.get(c.set)?.[c.family === 4 ? "v4" : "v6"], c.addr);
    const is = hasAddr(pb.get(c.set)?.[c.family === 4 ? "v4" : "v6"], c.addr);
    if (was && !is) put(dels, nameOf(c.set, c.family), c.addr);
    if (is && !was) put(adds, nameOf(c.set, c.family), c.addr);
  }
  const portSetsOf = (m: CompiledModel) => new Map(m.namedPortSets.map((s) => [s.id, s]));
  const [na, nb] = [portSetsOf(prev), portSetsOf(next)];
  const byPortSet = new Map<string, NamedPortElement[]>();
  for (const c of change.namedPorts) byPortSet.set(c.set, [...(byPortSet.get(c.set) ?? []), c.element]);
  const elKey = (e: NamedPortElement) => `${e.family} ${e.addr} ${e.protocol} ${e.port}`;
  for (const [set, candidates] of byPortSet) {
    // Elements are not sorted by address (and two pods may share one): scan for a few
    // candidates, index the set once for many (a burst of pods).
    const has = (elements: readonly NamedPortElement[] | undefined): ((e: NamedPortElement) => boolean) => {
      if (!elements) return () => false;
      if (candidates.length <= 8)
        return (e) =>
          elements.some(
            (x) => x.family === e.family && x.addr === e.addr && x.protocol === e.protocol && x.port === e.port,
          );
      const keys = new Set(elements.map(elKey));
      return (e) => keys.has(elKey(e));
    };
    const [inPrev, inNext] = [has(na.get(set)?.elements), has(nb.get(set)?.elements)];
    for (const e of candidates) {
      const was = inPrev(e);
      const is = inNext(e);
      const text = `${e.addr} . ${PROTO[e.protocol]} . ${e.port}`;
      if (was && !is) put(dels, nameOf(set, e.family), text);
      if (is && !was) put(adds, nameOf(set, e.family), text);
    }
  }
  const la = localSets(prev);
  const lb = localSets(next);
  for (let i = 0; i < lb.length; i++) {
    const before = la[i].elements;
    const after = lb[i].elements;
    for (const [k, v] of before) if (after.get(k) !== v) put(dels, lb[i].name, k);
    for (const [k, v] of after) if (before.get(k) !== v) put(adds, lb[i].name, v);
  }
  const lines = [
    ...[...dels].map(([set, els]) => `delete element inet ${table} ${set} { ${[...els].join(", ")} }`),
    ...[...adds].map(([set, els]) => `add element inet ${table} ${set} { ${[...els].join(", ")} }`),
  ];
  return lines.length ? `${lines.join("\n")}\n` : "";
}
