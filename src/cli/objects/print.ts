// Output of `weft get`: kubectl's tables (columns per kind, AGE as kubectl abbreviates it),
// JSON and YAML (a single object as itself, several as a v1 List), or kind/name lines.
import { stringify } from "yaml";
import { selectorIsEmpty, selectorString, type LabelSelector } from "../../k8s/index.js";
import { resourceName, type KindInfo } from "./kinds.js";

export type OutputFormat = "table" | "wide" | "json" | "yaml" | "name";

/** Anything printable: a stored object or a Node made from a lease. */
export interface Printable {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; creationTimestamp?: string };
  spec?: unknown;
  status?: unknown;
}

export function parseOutput(o: string | undefined): OutputFormat {
  if (o === undefined) return "table";
  if (o === "json" || o === "yaml" || o === "wide" || o === "name") return o;
  throw new Error(`-o ${o}: use json, yaml, wide or name`);
}

/** kubectl's HumanDuration: 45s, 3m20s, 12m, 5h3m, 20h, 3d4h, 45d, 2y30d, 9y. */
export function humanAge(createdIso: string | undefined, now = Date.now()): string {
  const t = createdIso ? Date.parse(createdIso) : NaN;
  if (Number.isNaN(t)) return "<unknown>";
  const sec = Math.floor((now - t) / 1000);
  if (sec < -1) return "<invalid>";
  if (sec < 0) return "0s";
  if (sec < 120) return `${sec}s`;
  const min = Math.floor(sec / 60);
  if (min < 10) return sec % 60 === 0 ? `${min}m` : `${min}m${sec % 60}s`;
  if (min < 180) return `${min}m`;
  const h = Math.floor(min / 60);
  if (h < 8) return min % 60 === 0 ? `${h}h` : `${h}h${min % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 24 * 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  if (d < 365 * 8) return d % 365 === 0 ? `${y}y` : `${y}y${d % 365}d`;
  return `${y}y`;
}

/** Columns padded like kubectl's tabwriter: each column 3 spaces wider than its widest cell. */
export function formatTable(rows: string[][]): string {
  if (rows.length === 0) return "";
  const widths = columnWidths(rows);
  return rows.map((r) => formatRow(r, widths)).join("\n") + "\n";
}

export function columnWidths(rows: string[][]): number[] {
  return rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
}

/** One table line with the given column widths (`get -w` keeps the first batch's widths). */
export function formatRow(r: string[], widths: readonly number[]): string {
  return r
    .map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? c.length) + 3)))
    .join("")
    .trimEnd();
}

const rec = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const str = (v: unknown, dflt = "<none>"): string => (typeof v === "string" && v !== "" ? v : dflt);

function podColumns(o: Printable, wide: boolean): { head: string[]; cells: string[] } {
  const spec = rec(o.spec),
    status = rec(o.status);
  const containers = Array.isArray(spec.containers) ? spec.containers.length : 0;
  const statuses = Array.isArray(status.containerStatuses) ? status.containerStatuses.map(rec) : undefined;
  const phase = str(status.phase, "Pending");
  const ready = statuses ? statuses.filter((s) => s.ready === true).length : phase === "Running" ? containers : 0;
  const restarts = statuses
    ? statuses.reduce((n, s) => n + (typeof s.restartCount === "number" ? s.restartCount : 0), 0)
    : 0;
  const head = ["READY", "STATUS", "RESTARTS", "AGE"];
  const cells = [`${ready}/${containers}`, phase, String(restarts), humanAge(o.metadata.creationTimestamp)];
  if (wide) {
    head.push("IP", "NODE");
    cells.push(str(status.podIP), str(spec.nodeName));
  }
  return { head, cells };
}

function columns(o: Printable, wide: boolean): { head: string[]; cells: string[] } {
  const age = humanAge(o.metadata.creationTimestamp);
  switch (o.kind) {
    case "Namespace":
      return { head: ["STATUS", "AGE"], cells: [str(rec(o.status).phase, "Active"), age] };
    case "Pod":
      return podColumns(o, wide);
    case "NetworkPolicy": {
      const sel = rec(rec(o.spec).podSelector) as LabelSelector;
      return { head: ["POD-SELECTOR", "AGE"], cells: [selectorIsEmpty(sel) ? "<none>" : selectorString(sel), age] };
    }
    case "Node": {
      const status = rec(o.status);
      const ready = (Array.isArray(status.conditions) ? status.conditions.map(rec) : []).some(
        (c) => c.type === "Ready" && c.status === "True",
      );
      const cidrs = rec(o.spec).podCIDRs;
      const head = ["STATUS", "AGE", "POD-CIDRS"];
      const cells = [
        ready ? "Ready" : "NotReady",
        age,
        Array.isArray(cidrs) && cidrs.length ? cidrs.join(",") : "<none>",
      ];
      if (wide) {
        const addrs = (Array.isArray(status.addresses) ? status.addresses.map(rec) : [])
          .filter((a) => a.type === "InternalIP")
          .map((a) => String(a.address));
        head.push("INTERNAL-IP");
        cells.push(addrs.length ? addrs.join(",") : "<none>");
      }
      return { head, cells };
    }
    case "BGPConfiguration": {
      const spec = rec(o.spec);
      const an = rec(spec.announce);
      const prefixes = Array.isArray(an.prefixes) ? an.prefixes.join(",") : "";
      return {
        head: ["AS", "MESH", "ANNOUNCE", "AGE"],
        cells: [
          spec.asNumber === undefined ? "<default>" : String(spec.asNumber),
          spec.nodeToNodeMesh === false ? "off" : "on",
          [an.podCIDRs === false ? "" : "pod-cidrs", prefixes].filter(Boolean).join(",") || "<none>",
          age,
        ],
      };
    }
    case "BGPPeer": {
      const spec = rec(o.spec);
      const nodes = str(spec.node, "") || str(spec.nodeSelector, "") || "<all>";
      const peer = typeof spec.peerSelector === "string" ? `nodes: ${spec.peerSelector}` : `${str(spec.peerAddress)}`;
      const head = ["NODES", "PEER", "AS", "AGE"];
      const cells = [nodes, peer, spec.asNumber === undefined ? "<node's>" : String(spec.asNumber), age];
      if (wide) {
        head.push("BFD", "RR-CLIENT", "PASSWORD");
        cells.push(
          spec.bfd === true ? "on" : "off",
          spec.routeReflectorClient === true ? "yes" : "no",
          spec.password !== undefined ? "***" : "<none>",
        );
      }
      return { head, cells };
    }
    default:
      return { head: ["AGE"], cells: [age] };
  }
}

const labelText = (l: Record<string, string> | undefined): string =>
  l && Object.keys(l).length
    ? Object.entries(l)
        .map(([k, v]) => `${k}=${v}`)
        .join(",")
    : "<none>";

export interface PrintOptions {
  format: OutputFormat;
  /** -A: a NAMESPACE column first (namespaced kinds). */
  allNamespaces: boolean;
  showLabels: boolean;
  /** A single named object prints as itself in JSON/YAML, not as a List. */
  single: boolean;
}

/** The text `weft get` prints for these objects of one kind. */
export function render(info: KindInfo, objs: readonly Printable[], opts: PrintOptions): string {
  switch (opts.format) {
    case "json":
    case "yaml": {
      const value =
        opts.single && objs.length === 1
          ? objs[0]
          : { kind: "List", apiVersion: "v1", items: objs, metadata: { resourceVersion: "" } };
      return opts.format === "json" ? JSON.stringify(value, null, 4) + "\n" : stringify(value);
    }
    case "name":
      return objs.map((o) => `${resourceName(info)}/${o.metadata.name}\n`).join("");
    case "table":
    case "wide":
      return objs.length === 0 ? "" : formatTable(tableRows(info, objs, opts, true));
  }
}

/** Table rows for objects of one kind, with the header row first when `header` is set. */
export function tableRows(info: KindInfo, objs: readonly Printable[], opts: PrintOptions, header: boolean): string[][] {
  const nsCol = opts.allNamespaces && info.namespaced;
  const rows: string[][] = [];
  const wide = opts.format === "wide";
  if (header) {
    // The header comes from the kind's columns; an empty placeholder object gives their names.
    const c = columns(objs[0] ?? { apiVersion: info.apiVersion, kind: info.kind, metadata: { name: "" } }, wide);
    rows.push([...(nsCol ? ["NAMESPACE"] : []), "NAME", ...c.head, ...(opts.showLabels ? ["LABELS"] : [])]);
  }
  for (const o of objs) {
    const c = columns(o, wide);
    rows.push([
      ...(nsCol ? [str(o.metadata.namespace)] : []),
      o.metadata.name,
      ...c.cells,
      ...(opts.showLabels ? [labelText(o.metadata.labels)] : []),
    ]);
  }
  return rows;
}
