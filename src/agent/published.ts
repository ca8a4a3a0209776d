// What an agent publishes in its node registration's backendData (string values only), for its
// peers and for `weft status`:
//   "backend"  the backend's setup() data as JSON (e.g. {"vtepMAC":...,"vni":1,"underlayFamily":4})
//   "agent"    AgentReport as JSON: health, the last peer sync's per-peer errors, pod count
// Only content that changes the meaning is published (no timestamps), so a steady node writes nothing.
import type { BackendData, SyncReport } from "../backends/types.js";

export const BACKEND_KEY = "backend";
export const AGENT_KEY = "agent";
/** The encryption's published data (public key, port), JSON; absent while encryption is off. */
export const ENCRYPTION_KEY = "encryption";

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
  /** bgp backend: each BGP session's peer, address and state at the last sync (since: ISO 8601). */
  sessions?: { peer: string; address: string; state: string; since?: string; imported?: number; exported?: number }[];
  /** bgp backend: BIRD's health at the last sync. */
  daemon?: { name: string; ok: boolean; detail: string };
  /** vxlan backend: the VTEP and its offloads (ethtool feature -> on) as set up. */
  device?: { name: string; offloads: Record<string, boolean> };
  /** Encryption between nodes: type, strict, the pod MTU it carries, per-peer state. */
  encryption?: EncryptionReportJson;
}

/** The encryption part of the report (agent/cluster/encryption.ts EncryptionReport, as JSON). */
export interface EncryptionReportJson {
  type: string;
  strict: boolean;
  podMtuCeiling?: number;
  status?: {
    implementation: string;
    device: string;
    pid?: number;
    identity?: string;
    keyCreatedAt?: string;
    peers: readonly {
      name: string;
      ok: boolean;
      identity?: string;
      keySince?: string;
      lastHandshake?: string;
      rxBytes?: number;
      txBytes?: number;
      errors: readonly string[];
    }[];
    errors: readonly string[];
  };
  error?: string;
}

export function encodeBackendData(
  data: BackendData,
  report?: AgentReport,
  encryption?: Readonly<Record<string, unknown>>,
): Record<string, string> {
  return {
    [BACKEND_KEY]: JSON.stringify(data),
    ...(report ? { [AGENT_KEY]: JSON.stringify(report) } : {}),
    ...(encryption ? { [ENCRYPTION_KEY]: JSON.stringify(encryption) } : {}),
  };
}

export function decodeBackendData(d: Record<string, string>): BackendData {
  return readBackendData(d).data;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The backend's published data; `problem` says why it could not be read (the data is then empty). */
export function readBackendData(d: Record<string, string>): { data: BackendData; problem?: string } {
  const raw = d[BACKEND_KEY];
  if (raw === undefined) return { data: {} };
  try {
    const v = JSON.parse(raw) as unknown;
    if (isObject(v)) return { data: v as BackendData };
    return { data: {}, problem: `its published backend data is not a JSON object: ${raw.slice(0, 80)}` };
  } catch (e) {
    return { data: {}, problem: `its published backend data is not valid JSON (${(e as Error).message})` };
  }
}

export function decodeAgentReport(d: Record<string, string>): AgentReport | undefined {
  return readAgentReport(d).report;
}

/**
 * The agent's published report: absent (not published yet: neither report nor problem), or
 * unreadable (`problem` says why; the node is then not ready, never shown as healthy).
 */
export function readAgentReport(d: Record<string, string>): { report?: AgentReport; problem?: string } {
  const raw = d[AGENT_KEY];
  if (raw === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    return { problem: `its agent report is not valid JSON (${(e as Error).message})` };
  }
  const bad = (what: string) => ({ problem: `its agent report is unreadable: ${what}` });
  if (!isObject(v)) return bad("not a JSON object");
  if (v.health !== "ok" && v.health !== "degraded")
    return bad(`health is ${JSON.stringify(v.health)}, not "ok" or "degraded"`);
  if (typeof v.backend !== "string" || typeof v.podMtu !== "number" || typeof v.pods !== "number")
    return bad("backend, podMtu or pods missing");
  if (!isObject(v.peers) || !Array.isArray(v.errors)) return bad("peers or errors missing");
  for (const [name, p] of Object.entries(v.peers)) {
    if (!isObject(p) || !Array.isArray(p.errors) || !isObject(p.paths)) return bad(`peer ${name} is malformed`);
  }
  if (
    v.sessions !== undefined &&
    (!Array.isArray(v.sessions) ||
      !v.sessions.every((x) => isObject(x) && ["peer", "address", "state"].every((k) => typeof x[k] === "string")))
  )
    return bad("sessions is not a list of {peer, address, state}");
  if (
    v.device !== undefined &&
    (!isObject(v.device) ||
      typeof v.device.name !== "string" ||
      !isObject(v.device.offloads) ||
      !Object.values(v.device.offloads).every((x) => typeof x === "boolean"))
  )
    return bad("device is not {name, offloads}");
  return { report: v as unknown as AgentReport };
}

export function reportFromSync(r: SyncReport, base: Omit<AgentReport, "health" | "peers" | "errors">): AgentReport {
  const peers: Record<string, PeerReport> = {};
  for (const p of r.peers) peers[p.name] = { ok: p.ok, paths: { ...p.paths }, errors: [...p.errors] };
  const bad = r.errors.length > 0 || r.peers.some((p) => !p.ok) || (base.strandedPods ?? 0) > 0;
  const sessions = r.sessions?.map((x) => ({
    peer: x.peer,
    address: x.address,
    state: x.state,
    ...(x.since !== undefined ? { since: x.since } : {}),
    ...(x.imported !== undefined ? { imported: x.imported } : {}),
    ...(x.exported !== undefined ? { exported: x.exported } : {}),
  }));
  return {
    health: bad ? "degraded" : "ok",
    ...base,
    peers,
    errors: [...r.errors],
    ...(sessions ? { sessions } : {}),
    ...(r.daemon ? { daemon: { ...r.daemon } } : {}),
  };
}
