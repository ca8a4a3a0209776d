// CniError: a failure with a spec error code, printed as the spec's error JSON on stdout.
import { CniErrorCode, type CniErrorJson } from "./types.js";

export { CniErrorCode };

export class CniError extends Error {
  constructor(
    readonly code: number,
    readonly msg: string,
    readonly details?: string,
  ) {
    super(details ? `${msg}: ${details}` : msg);
    this.name = "CniError";
  }

  /** The spec's error structure; cniVersion is the version in use (the config's, if known). */
  toJson(cniVersion: string): CniErrorJson {
    const out: CniErrorJson = { cniVersion, code: this.code, msg: this.msg };
    if (this.details) out.details = this.details;
    return out;
  }
}

/**
 * A config value for an error message: its JSON, cut to 200 characters. A value too deeply nested
 * for JSON.stringify (a hostile config) must not turn a config error into an internal error.
 */
export function showValue(v: unknown): string {
  try {
    return (JSON.stringify(v) ?? String(v)).slice(0, 200);
  } catch {
    return "(a value too deeply nested to show)";
  }
}

/** Any thrown value as a CniError; unexpected exceptions become weft's internal code 999. */
export function asCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new CniError(InternalErrorCode, "weft plugin internal error", message);
}

/** Codes 100+ are plugin-specific; Go's libcni uses 999 for "internal", so do we. */
export const InternalErrorCode = 999;

export const incompatibleVersion = (msg: string, details?: string) =>
  new CniError(CniErrorCode.IncompatibleVersion, msg, details);
export const unsupportedField = (msg: string, details?: string) =>
  new CniError(CniErrorCode.UnsupportedField, msg, details);
export const unknownContainer = (msg: string, details?: string) =>
  new CniError(CniErrorCode.UnknownContainer, msg, details);
export const invalidEnv = (msg: string, details?: string) =>
  new CniError(CniErrorCode.InvalidEnvironment, msg, details);
export const ioFailure = (msg: string, details?: string) => new CniError(CniErrorCode.IoFailure, msg, details);
export const decodeFailure = (msg: string, details?: string) => new CniError(CniErrorCode.DecodeFailure, msg, details);
export const invalidConfig = (msg: string, details?: string) => new CniError(CniErrorCode.InvalidConfig, msg, details);
export const tryAgainLater = (msg: string, details?: string) => new CniError(CniErrorCode.TryAgainLater, msg, details);
export const notAvailable = (msg: string, details?: string) =>
  new CniError(CniErrorCode.PluginNotAvailable, msg, details);
