// What an agent publishes in its node registration's backendData (string values only), for its
// peers and for `weft status`:
//   "backend"  the backend's setup() data as JSON (e.g. {"vtepMAC":...,"vni":1,"underlayFamily":4})
//   "agent"    AgentReport as JSON: health, the last peer sync's per-peer errors, pod count
// Only content that changes the meaning is published (no timestamps), so a steady node writes nothing.
import type { BackendData, SyncReport } from "../backends/types.js";

export const BACKEND_KEY = "backend";
export const AGENT_KEY = "agent";

export interface PeerReport {
  ok: boolean;
  /** Pod subnet -> "vxlan" | "direct". */
  paths: Record<string, string>;
  errors: string[];
}

export interface AgentReport {
  /** "ok": every peer wired; "degraded": some peer or the backend reported errors. */
  health: "ok" | "degraded";
  backend: string;
  podMtu: number;
  /** Attachments wired on this node (pods, counting each weft interface). */
  pods: number;
  peers: Record<string, PeerReport>;
  /** Sync errors not tied to one peer. */
  errors: string[];
  /** Pod addresses outside the node's current pod CIDRs (left over from a lost subnet). */
  strandedPods?: number;
}

export function encodeBackendData(data: BackendData, report?: AgentReport): Record<string, string> {
  return { [BACKEND_KEY]: JSON.stringify(data), ...(report ? { [AGENT_KEY]: JSON.stringify(report) } : {}) };
}

export function decodeBackendData(d: Record<string, string>): BackendData {
  const raw = d[BACKEND_KEY];
  if (raw === undefined) return {};
  try {
    const v = JSON.parse(raw) as unknown;
    return v && typeof v === "object" && !Array.isArray(v) ? (v as BackendData) : {};
  } catch {
    return {};
  }
}

export function decodeAgentReport(d: Record<string, string>): AgentReport | undefined {
  const raw = d[AGENT_KEY];
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as AgentReport;
  } catch {
    return undefined;
  }
}

export function reportFromSync(r: SyncReport, base: Omit<AgentReport, "health" | "peers" | "errors">): AgentReport {
  const peers: Record<string, PeerReport> = {};
  for (const p of r.peers) peers[p.name] = { ok: p.ok, paths: { ...p.paths }, errors: [...p.errors] };
  const bad = r.errors.length > 0 || r.peers.some((p) => !p.ok) || (base.strandedPods ?? 0) > 0;
  return { health: bad ? "degraded" : "ok", ...base, peers, errors: [...r.errors] };
}
