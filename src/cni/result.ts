// Result conversion. weft works in the 1.1.0 result shape (types.ts Result) and converts only at
// the edge: toVersion() for what goes on stdout, parseResult() for a prevResult or a delegated
// IPAM plugin's output in any supported version.
//
// What differs between versions (spec tags and libcni's types/040 and types/100):
//   0.3.0, 0.3.1, 0.4.0: ips[] carry "version": "4" | "6"; interfaces are {name, mac, sandbox};
//                        routes are {dst, gw}.
//   1.0.0:              ips[].version removed; otherwise as 0.4.0.
//   1.1.0:              interfaces gain mtu, socketPath, pciID; routes gain mtu, advmss,
//                        priority, table, scope.
// Empty lists and an empty dns are left out, as libcni does (omitempty).
import { isIP } from "node:net";
import { cidrOrNull } from "../net/cidr.js";
import { parseIp as parseAddress } from "../net/ip.js";
import { CniError, showValue } from "./errors.js";
import {
  CniErrorCode,
  type CniVersion,
  type Dns,
  type Interface,
  type IpConfig,
  type Result,
  type Route,
} from "./types.js";
import { isSupportedVersion, LATEST_VERSION, versionAtLeast } from "./version.js";

/** A result in some version's wire format, ready for JSON.stringify. */
export type WireResult = Record<string, unknown>;

const hasIpVersionField = (v: string) => !versionAtLeast(v, "1.0.0");
const has110Fields = (v: string) => versionAtLeast(v, "1.1.0");

/** The internal 1.1.0 result as `version` expects it on the wire; fields `version` lacks are dropped. */
export function toVersion(result: Result, version: CniVersion): WireResult {
  const out: WireResult = { cniVersion: version };
  const full = has110Fields(version);
  if (result.interfaces?.length) {
    out.interfaces = result.interfaces.map((i) => {
      const o: Record<string, unknown> = { name: i.name };
      if (i.mac) o.mac = i.mac;
      if (full && i.mtu !== undefined) o.mtu = i.mtu;
      if (i.sandbox) o.sandbox = i.sandbox;
      if (full && i.socketPath) o.socketPath = i.socketPath;
      if (full && i.pciID) o.pciID = i.pciID;
      return o;
    });
  }
  if (result.ips?.length) {
    out.ips = result.ips.map((ip) => {
      const o: Record<string, unknown> = {};
      if (hasIpVersionField(version)) o.version = ipFamily(ip.address);
      o.address = ip.address;
      if (ip.gateway) o.gateway = ip.gateway;
      if (ip.interface !== undefined) o.interface = ip.interface;
      return o;
    });
  }
  if (result.routes?.length) {
    out.routes = result.routes.map((r) => {
      const o: Record<string, unknown> = { dst: r.dst };
      if (r.gw) o.gw = r.gw;
      if (full) {
        for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) if (r[k] !== undefined) o[k] = r[k];
      }
      return o;
    });
  }
  const dns = cleanDns(result.dns);
  if (dns) out.dns = dns;
  return out;
}

/** "4" or "6" for an address in CIDR notation (as 0.3.x/0.4.0 ips[].version wants). */
function ipFamily(cidrAddr: string): "4" | "6" {
  return parseAddress(cidrAddr.split("/")[0])?.family === 4 ? "4" : "6";
}

function cleanDns(dns: Dns | undefined): Dns | undefined {
  if (!dns) return undefined;
  const o: Dns = {};
  if (dns.nameservers?.length) o.nameservers = [...dns.nameservers];
  if (dns.domain) o.domain = dns.domain;
  if (dns.search?.length) o.search = [...dns.search];
  if (dns.options?.length) o.options = [...dns.options];
  return Object.keys(o).length ? o : undefined;
}

export interface ParseOptions {
  /** Names the thing in error messages, e.g. "prevResult" or "IPAM plugin host-local output". */
  what?: string;
  /** The error code for a malformed result (7 for a config's prevResult). */
  code?: number;
  /** Delegated IPAM output: interfaces and ips[].interface are not expected and are dropped. */
  ipam?: boolean;
}

/**
 * Parses a result in any supported version into the internal 1.1.0 form. The result's own
 * cniVersion decides its format when present; `fallbackVersion` (the config's) otherwise.
 */
export function parseResult(raw: unknown, fallbackVersion: CniVersion, opts: ParseOptions = {}): Result {
  const what = opts.what ?? "result";
  const fail = (msg: string): never => {
    throw new CniError(opts.code ?? CniErrorCode.InvalidConfig, `${what} is invalid: ${msg}`);
  };
  if (!isObject(raw)) return fail("not a JSON object");
  let version: CniVersion = fallbackVersion;
  if (raw.cniVersion !== undefined && raw.cniVersion !== "") {
    if (!isSupportedVersion(raw.cniVersion)) return fail(`unsupported cniVersion ${showValue(raw.cniVersion)}`);
    version = raw.cniVersion;
  }
  const out: Result = { cniVersion: LATEST_VERSION };

  if (raw.interfaces !== undefined && raw.interfaces !== null && !opts.ipam) {
    out.interfaces = list(raw.interfaces, "interfaces", fail).map((v, n) =>
      parseInterface(v, `interfaces[${n}]`, fail),
    );
  }
  if (raw.ips !== undefined && raw.ips !== null) {
    out.ips = list(raw.ips, "ips", fail).map((v, n) => parseIp(v, `ips[${n}]`, version, !!opts.ipam, fail));
  }
  if (raw.routes !== undefined && raw.routes !== null) {
    out.routes = list(raw.routes, "routes", fail).map((v, n) => parseRoute(v, `routes[${n}]`, fail));
  }
  if (raw.dns !== undefined && raw.dns !== null) {
    const dns = cleanDns(parseDns(raw.dns, "dns", fail));
    if (dns) out.dns = dns;
  }
  if (out.ips && out.interfaces) {
    for (const [n, ip] of out.ips.entries()) {
      if (ip.interface !== undefined && ip.interface >= out.interfaces.length) {
        fail(`ips[${n}].interface ${ip.interface} does not index into interfaces (${out.interfaces.length} entries)`);
      }
    }
  }
  return out;
}

type Fail = (msg: string) => never;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function list(v: unknown, where: string, fail: Fail): unknown[] {
  if (!Array.isArray(v)) return fail(`${where} is not a list`);
  return v;
}

function str(o: Record<string, unknown>, key: string, where: string, fail: Fail): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") return fail(`${where}.${key} is not a string`);
  return v;
}

function uint(o: Record<string, unknown>, key: string, where: string, fail: Fail): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
    return fail(`${where}.${key} is not a non-negative integer`);
  return v;
}

function strList(o: Record<string, unknown>, key: string, where: string, fail: Fail): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string"))
    return fail(`${where}.${key} is not a list of strings`);
  return v as string[];
}

function cidrOf(v: string | undefined, where: string, fail: Fail): string {
  if (!v) return fail(`${where} is missing`);
  // An interface address keeps its host bits (10.1.2.3/24).
  if (!cidrOrNull(v, { hostBits: "clear" })) return fail(`${where} "${v}" is not an address in CIDR notation`);
  return v;
}

function ipOf(v: string | undefined, where: string, fail: Fail): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (!parseAddress(v)) return fail(`${where} "${v}" is not an IP address`);
  return v;
}

function parseInterface(v: unknown, where: string, fail: Fail): Interface {
  if (!isObject(v)) return fail(`${where} is not an object`);
  const name = str(v, "name", where, fail);
  if (!name) return fail(`${where}.name is missing`);
  const i: Interface = { name };
  const mac = str(v, "mac", where, fail);
  if (mac) i.mac = mac;
  const mtu = uint(v, "mtu", where, fail);
  if (mtu !== undefined) i.mtu = mtu;
  const sandbox = str(v, "sandbox", where, fail);
  if (sandbox) i.sandbox = sandbox;
  const socketPath = str(v, "socketPath", where, fail);
  if (socketPath) i.socketPath = socketPath;
  const pciID = str(v, "pciID", where, fail);
  if (pciID) i.pciID = pciID;
  return i;
}

function parseIp(v: unknown, where: string, version: string, ipam: boolean, fail: Fail): IpConfig {
  if (!isObject(v)) return fail(`${where} is not an object`);
  const address = cidrOf(str(v, "address", where, fail), `${where}.address`, fail);
  const out: IpConfig = { address };
  const gateway = ipOf(str(v, "gateway", where, fail), `${where}.gateway`, fail);
  if (gateway) out.gateway = gateway;
  const idx = uint(v, "interface", where, fail);
  if (idx !== undefined && !ipam) out.interface = idx;
  // 0.3.x/0.4.0 label each address with its family; a label that contradicts it is an error.
  const fam = str(v, "version", where, fail);
  if (fam !== undefined && hasIpVersionField(version)) {
    if (fam !== "4" && fam !== "6") fail(`${where}.version must be "4" or "6"`);
    if (fam !== ipFamily(address)) fail(`${where}.version "${fam}" does not match address ${address}`);
  }
  return out;
}

function parseRoute(v: unknown, where: string, fail: Fail): Route {
  if (!isObject(v)) return fail(`${where} is not an object`);
  const r: Route = { dst: cidrOf(str(v, "dst", where, fail), `${where}.dst`, fail) };
  const gw = ipOf(str(v, "gw", where, fail), `${where}.gw`, fail);
  if (gw) r.gw = gw;
  for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) {
    const n = uint(v, k, where, fail);
    if (n !== undefined) r[k] = n;
  }
  return r;
}

export function parseDns(v: unknown, where: string, fail: Fail): Dns {
  if (!isObject(v)) return fail(`${where} is not an object`);
  const d: Dns = {};
  const nameservers = strList(v, "nameservers", where, fail);
  if (nameservers) {
    // Not net/ip.ts: resolv.conf allows a scoped nameserver (fe80::1%eth0), and this is passed through, not routed.
    for (const ns of nameservers) if (isIP(ns) === 0) fail(`${where}.nameservers entry "${ns}" is not an IP address`);
    d.nameservers = nameservers;
  }
  const domain = str(v, "domain", where, fail);
  if (domain) d.domain = domain;
  const search = strList(v, "search", where, fail);
  if (search) d.search = search;
  const options = strList(v, "options", where, fail);
  if (options) d.options = options;
  return d;
}

/**
 * Appends this plugin's result to a previous interface plugin's (weft not first in a chain):
 * spec "Plugins provided a prevResult ... must output it as their result, with any possible
 * modifications made by that plugin included". Our ips[].interface indexes shift past the
 * previous interfaces; our dns wins when we have one.
 */
export function mergeResults(prev: Result, ours: Result): Result {
  const offset = prev.interfaces?.length ?? 0;
  const out: Result = { cniVersion: ours.cniVersion };
  const interfaces = [...(prev.interfaces ?? []), ...(ours.interfaces ?? [])];
  const ips = [
    ...(prev.ips ?? []),
    ...(ours.ips ?? []).map((ip) =>
      ip.interface === undefined ? { ...ip } : { ...ip, interface: ip.interface + offset },
    ),
  ];
  const routes = [...(prev.routes ?? []), ...(ours.routes ?? [])];
  if (interfaces.length) out.interfaces = interfaces;
  if (ips.length) out.ips = ips;
  if (routes.length) out.routes = routes;
  const dns = cleanDns(ours.dns) ?? cleanDns(prev.dns);
  if (dns) out.dns = dns;
  return out;
}
