// The plugin's network configuration (stdin): decode (code 6), version (code 1), validate (code 7).
// Hand-written checks rather than zod: in the compiled plugin, importing zod 4 and parsing one
// schema added ~3 ms of CPU to a ~8 ms start (zod/mini ~1 ms), paid on every pod ADD and DEL.
import { decodeFailure, invalidConfig, showValue, unsupportedField } from "./errors.js";
import { parseDns, parseResult } from "./result.js";
import {
  CniErrorCode,
  type Attachment,
  type CniCommand,
  type CniVersion,
  type Dns,
  type IpamConfig,
  type Result,
} from "./types.js";
import { isSupportedVersion, LATEST_VERSION, requireVersionFor, selectPluginVersion } from "./version.js";

/** Where the agent listens when the config has no "socket". */
export const DEFAULT_SOCKET = "/run/weft/weft.sock";
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** A validated plugin configuration. */
export interface WeftNetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** The agent's unix socket. */
  socket: string;
  mtu?: number;
  /** How long to wait for the agent (and a delegated IPAM plugin), overriding per-verb defaults. */
  timeoutMs?: number;
  /** Set when IPAM is delegated to another plugin; absent means the agent's own IPAM. */
  ipam?: IpamConfig;
  dns?: Dns;
  prevResult?: Result;
  /** GC only: the attachments still in use. */
  validAttachments?: Attachment[];
  /** The decoded JSON object, as received. */
  raw: Record<string, unknown>;
}

/** JSON text -> object; anything else is a decode failure (code 6). */
export function decodeNetConf(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw decodeFailure("network configuration on stdin is not valid JSON", (e as Error).message);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw decodeFailure("network configuration on stdin is not a JSON object");
  }
  return v as Record<string, unknown>;
}

/** The version to put in an error's JSON: the config's, when it is one weft speaks. */
export function errorVersion(raw: Record<string, unknown> | undefined): string {
  return raw && isSupportedVersion(raw.cniVersion) ? raw.cniVersion : LATEST_VERSION;
}

/** Spec: network names start alphanumeric, then alphanumerics, '_', '.', '-'. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A plugin type names an executable: non-empty, no path separators. */
function validType(v: unknown): v is string {
  return typeof v === "string" && v !== "" && !/[/\\\0]/.test(v) && v !== "." && v !== "..";
}

export function validateNetConf(raw: Record<string, unknown>, command: CniCommand): WeftNetConf {
  const cniVersion = selectPluginVersion(raw.cniVersion, raw.cniVersions);
  requireVersionFor(command, cniVersion);

  // A whole conflist fed to the plugin: say so rather than "no type".
  if (raw.plugins !== undefined) {
    throw unsupportedField(
      `unsupported field "plugins": ${showValue(raw.plugins)}`,
      'this is a network configuration list; a runtime passes each plugin its own object from "plugins"',
    );
  }
  if (raw.name === undefined || raw.name === "") throw invalidConfig('network configuration has no "name"');
  if (typeof raw.name !== "string" || !NAME.test(raw.name)) {
    throw invalidConfig(
      `network name ${showValue(raw.name)} is invalid`,
      "it must start with a letter or digit, followed by letters, digits, '_', '.' or '-'",
    );
  }
  if (raw.type === undefined || raw.type === "") throw invalidConfig('network configuration has no "type"');
  if (!validType(raw.type))
    throw invalidConfig(`plugin type ${showValue(raw.type)} is invalid`, "it names an executable: no '/' or '\\'");

  const conf: WeftNetConf = { cniVersion, name: raw.name, type: raw.type, socket: DEFAULT_SOCKET, raw };

  if (raw.socket !== undefined) {
    if (typeof raw.socket !== "string" || !raw.socket.startsWith("/") || raw.socket.includes("\0")) {
      throw invalidConfig(`"socket" ${showValue(raw.socket)} is not an absolute path`);
    }
    if (Buffer.byteLength(raw.socket) > MAX_SOCKET_PATH_BYTES) {
      throw invalidConfig(`"socket" path is longer than ${MAX_SOCKET_PATH_BYTES} bytes`, raw.socket);
    }
    conf.socket = raw.socket;
  }
  if (raw.mtu !== undefined) {
    if (typeof raw.mtu !== "number" || !Number.isInteger(raw.mtu) || raw.mtu < 68 || raw.mtu > 65535) {
      throw invalidConfig(`"mtu" ${showValue(raw.mtu)} is invalid`, "it must be an integer from 68 to 65535");
    }
    conf.mtu = raw.mtu;
  }
  if (raw.timeoutMs !== undefined) {
    if (
      typeof raw.timeoutMs !== "number" ||
      !Number.isInteger(raw.timeoutMs) ||
      raw.timeoutMs < 1 ||
      raw.timeoutMs > 600_000
    ) {
      throw invalidConfig(
        `"timeoutMs" ${showValue(raw.timeoutMs)} is invalid`,
        "it must be an integer from 1 to 600000",
      );
    }
    conf.timeoutMs = raw.timeoutMs;
  }
  for (const k of ["disableCheck", "disableGC"] as const) {
    if (raw[k] !== undefined && typeof raw[k] !== "boolean") throw invalidConfig(`"${k}" must be true or false`);
  }
  for (const k of ["capabilities", "runtimeConfig", "args"] as const) {
    if (raw[k] !== undefined && raw[k] !== null && !isObject(raw[k])) throw invalidConfig(`"${k}" must be an object`);
  }
  if (raw.ipam !== undefined && raw.ipam !== null) {
    if (!isObject(raw.ipam)) throw invalidConfig('"ipam" must be an object');
    // "ipam": {} means no delegation (as with the reference plugins): the agent allocates.
    if (Object.keys(raw.ipam).length > 0) {
      if (!validType(raw.ipam.type)) {
        throw invalidConfig(
          `"ipam.type" ${showValue(raw.ipam.type)} is invalid`,
          'name the IPAM plugin executable (e.g. host-local), or leave out "ipam" to use weft\'s own IPAM',
        );
      }
      // Delegating to ourselves would exec weft recursively; so would its full plugin, which the
      // forwarder installs beside it as "<type>-full" (each level delegating again, without end).
      if (raw.ipam.type === raw.type || raw.ipam.type === `${raw.type}-full`)
        throw invalidConfig(
          `"ipam.type" "${raw.ipam.type}" names this plugin itself`,
          'name an IPAM plugin such as host-local, or leave out "ipam"',
        );
      conf.ipam = raw.ipam as IpamConfig;
    }
  }
  if (raw.dns !== undefined && raw.dns !== null) {
    conf.dns = parseDns(raw.dns, "dns", (msg) => {
      throw invalidConfig(`"dns" is invalid: ${msg}`);
    });
  }
  // DEL must clean up whatever the prevResult says; a broken one must not block it.
  if (raw.prevResult !== undefined && raw.prevResult !== null && command !== "DEL") {
    conf.prevResult = parseResult(raw.prevResult, cniVersion, { what: "prevResult", code: CniErrorCode.InvalidConfig });
  }
  if (command === "CHECK" && !conf.prevResult) throw invalidConfig("CHECK needs a prevResult (the result of the ADD)");
  if (command === "GC") conf.validAttachments = parseAttachments(raw);
  return conf;
}

/** GC's attachment list; libcni before spec 1.1.0 final called the key cni.dev/attachments. */
function parseAttachments(raw: Record<string, unknown>): Attachment[] {
  const key = raw["cni.dev/valid-attachments"] !== undefined ? "cni.dev/valid-attachments" : "cni.dev/attachments";
  const list = raw[key];
  // Without the list every attachment would look stale; refuse rather than wipe the node.
  if (list === undefined || list === null)
    throw invalidConfig('GC needs "cni.dev/valid-attachments" (the attachments still in use)');
  if (!Array.isArray(list)) throw invalidConfig(`"${key}" must be a list`);
  return list.map((a, n) => {
    if (
      !isObject(a) ||
      typeof a.containerID !== "string" ||
      typeof a.ifname !== "string" ||
      !a.containerID ||
      !a.ifname
    ) {
      throw invalidConfig(`"${key}"[${n}] must be {"containerID": string, "ifname": string}`);
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}
