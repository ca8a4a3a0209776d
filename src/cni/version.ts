// CNI spec version handling: which versions weft speaks, negotiation, and per-verb minimums.
import { incompatibleVersion, showValue } from "./errors.js";
import { SUPPORTED_VERSIONS, type CniCommand, type CniVersion } from "./types.js";

export { SUPPORTED_VERSIONS };
export type { CniVersion };

/** The newest spec version weft implements; VERSION answers with it when asked without one. */
export const LATEST_VERSION: CniVersion = "1.1.0";

const SEMVER = /^(\d+)\.(\d+)\.(\d+)$/;

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compares two "X.Y.Z" versions; NaN-free: non-numeric parts count as -1. */
export function compareVersions(a: string, b: string): number {
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
}

function parts(v: string): number[] {
  const m = SEMVER.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [-1, -1, -1];
}

export function isSemver(v: unknown): v is string {
  return typeof v === "string" && SEMVER.test(v);
}

export function versionAtLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0;
}

const supportedList = () => SUPPORTED_VERSIONS.join(", ");

/** The highest version in `candidates` that weft supports, or undefined. */
export function highestSupported(candidates: readonly unknown[]): CniVersion | undefined {
  let best: CniVersion | undefined;
  for (const c of candidates) if (isSupportedVersion(c) && (!best || compareVersions(c, best) > 0)) best = c;
  return best;
}

/**
 * The version of one plugin invocation. `cniVersion` is what the runtime put in the plugin's
 * config and is authoritative: the runtime parses our output in that version. `cniVersions`
 * (a conflist's list) is only consulted when `cniVersion` is absent.
 */
export function selectPluginVersion(cniVersion: unknown, cniVersions?: unknown): CniVersion {
  if (cniVersion !== undefined) {
    if (typeof cniVersion !== "string")
      throw incompatibleVersion("cniVersion must be a string", `got ${showValue(cniVersion)}`);
    if (!isSupportedVersion(cniVersion)) {
      throw incompatibleVersion(`incompatible CNI version "${cniVersion}"`, `weft supports ${supportedList()}`);
    }
    return cniVersion;
  }
  if (Array.isArray(cniVersions)) {
    const best = highestSupported(cniVersions);
    if (best) return best;
    throw incompatibleVersion(
      `none of cniVersions ${showValue(cniVersions)} is supported`,
      `weft supports ${supportedList()}`,
    );
  }
  throw incompatibleVersion("network configuration has no cniVersion", `weft supports ${supportedList()}`);
}

/**
 * A network configuration list's version, as a runtime picks it (spec section 1, "Version
 * considerations"): the highest supported version among `cniVersion` and `cniVersions`.
 */
export function selectConfListVersion(cniVersion: unknown, cniVersions?: unknown): CniVersion {
  const all: unknown[] = [];
  if (cniVersion !== undefined) all.push(cniVersion);
  if (Array.isArray(cniVersions)) all.push(...cniVersions);
  const best = highestSupported(all);
  if (best) return best;
  throw incompatibleVersion(
    `none of the configuration's versions ${showValue(all)} is supported`,
    `weft supports ${supportedList()}`,
  );
}

/** CHECK came with 0.4.0, GC and STATUS with 1.1.0: an older config version cannot ask for them. */
export const MIN_VERSION_FOR: Partial<Record<CniCommand, CniVersion>> = {
  CHECK: "0.4.0",
  GC: "1.1.0",
  STATUS: "1.1.0",
};

export function requireVersionFor(command: CniCommand, version: CniVersion): void {
  const min = MIN_VERSION_FOR[command];
  if (min && !versionAtLeast(version, min)) {
    throw incompatibleVersion(
      `config version ${version} does not allow ${command}`,
      `${command} needs cniVersion ${min} or later`,
    );
  }
}

export interface VersionResult {
  cniVersion: string;
  supportedVersions: string[];
}

/** The VERSION answer: cniVersion echoes the requested version (spec), else weft's latest. */
export function versionResult(requested: unknown): VersionResult {
  return {
    cniVersion: isSemver(requested) ? requested : LATEST_VERSION,
    supportedVersions: [...SUPPORTED_VERSIONS],
  };
}
