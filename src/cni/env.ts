// The CNI_* environment: which variables each verb needs (spec section 2) and their syntax.
// Every failure is code 4 with a message that names the variable.
import { normalize } from "node:path";
import { ifnameProblem } from "../net/ifname.js";
import { invalidEnv } from "./errors.js";
import type { CniCommand } from "./types.js";

export const COMMANDS: readonly CniCommand[] = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"];

type Var = "CNI_CONTAINERID" | "CNI_NETNS" | "CNI_IFNAME" | "CNI_PATH";

/** Required variables per verb, besides CNI_COMMAND (spec 1.1.0, "Input" of each operation). */
export const REQUIRED_ENV: Record<CniCommand, readonly Var[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  GC: ["CNI_PATH"],
  STATUS: [],
  VERSION: [],
};

export interface CniEnv {
  command: CniCommand;
  containerId?: string;
  netns?: string;
  ifname?: string;
  /** CNI_ARGS as key/value pairs. */
  args: Record<string, string>;
  /** CNI_PATH split into directories. */
  path: string[];
}

export type EnvSource = Readonly<Record<string, string | undefined>>;

/** CNI_COMMAND alone (the verb decides what else is needed). */
export function parseCommand(env: EnvSource): CniCommand {
  const cmd = env.CNI_COMMAND;
  if (!cmd) throw invalidEnv("CNI_COMMAND is not set", `set it to one of ${COMMANDS.join(", ")}`);
  if (!(COMMANDS as readonly string[]).includes(cmd)) {
    throw invalidEnv(`CNI_COMMAND "${cmd}" is not a CNI operation`, `expected one of ${COMMANDS.join(", ")}`);
  }
  return cmd as CniCommand;
}

/** Parses and validates the variables the verb uses; unused ones are ignored, as libcni's skel does. */
export function parseEnv(env: EnvSource): CniEnv {
  const command = parseCommand(env);
  const required = REQUIRED_ENV[command];
  const missing = required.filter((v) => !env[v]);
  if (missing.length)
    throw invalidEnv(
      `required environment variable${missing.length > 1 ? "s" : ""} ${missing.join(", ")} not set`,
      `CNI_COMMAND=${command} needs ${required.join(", ")}`,
    );

  const out: CniEnv = { command, args: {}, path: [] };
  const attachment = command === "ADD" || command === "DEL" || command === "CHECK";
  if (attachment) {
    out.containerId = validateContainerId(env.CNI_CONTAINERID ?? "");
    out.ifname = validateIfname(env.CNI_IFNAME ?? "");
    // On DEL the netns is optional: the runtime may have already removed it.
    if (env.CNI_NETNS) out.netns = validateNetnsPath(env.CNI_NETNS);
    if (env.CNI_ARGS) out.args = parseCniArgs(env.CNI_ARGS);
  }
  if (env.CNI_PATH) out.path = parseCniPath(env.CNI_PATH);
  return out;
}

/** Spec: not empty, starts alphanumeric, then alphanumerics, '_', '.', '-'. */
export function validateContainerId(id: string): string {
  if (!id) throw invalidEnv("CNI_CONTAINERID is empty");
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id)) {
    throw invalidEnv(
      `CNI_CONTAINERID "${id}" is invalid`,
      "it must start with a letter or digit, followed by letters, digits, '_', '.' or '-'",
    );
  }
  return id;
}

/** Spec + Linux + what `ip -batch` reads as syntax: the one rule in net/ifname.ts. */
export function validateIfname(name: string): string {
  const problem = ifnameProblem(name);
  if (problem) throw invalidEnv(`CNI_IFNAME "${name}" ${problem}`);
  return name;
}

/** An absolute, normalized path (as the agent requires); whether it exists is checked per verb. */
export function validateNetnsPath(p: string): string {
  if (!p.startsWith("/") || p.includes("\0") || normalize(p) !== p) {
    throw invalidEnv(`CNI_NETNS "${p}" is not an absolute path to a network namespace`);
  }
  return p;
}

/**
 * CNI_ARGS: "K=V;K=V". Empty segments (a trailing ';') are tolerated; a value may contain '='.
 * Keys are limited to a safe charset because they end up in logs and the agent's records.
 */
export function parseCniArgs(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of raw.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) throw invalidEnv(`CNI_ARGS has an invalid pair "${pair}"`, 'expected "KEY=VALUE;KEY=VALUE"');
    const key = pair.slice(0, eq);
    if (!/^[A-Za-z0-9_.-]+$/.test(key))
      throw invalidEnv(`CNI_ARGS key "${key}" is invalid`, "keys are letters, digits, '_', '.' or '-'");
    out[key] = pair.slice(eq + 1);
  }
  return out;
}

/** CNI_PATH: ':'-separated directories; empty entries are dropped, relative ones rejected. */
export function parseCniPath(raw: string): string[] {
  const dirs = raw.split(":").filter((d) => d !== "");
  for (const d of dirs) if (!d.startsWith("/")) throw invalidEnv(`CNI_PATH entry "${d}" is not an absolute directory`);
  return dirs;
}
