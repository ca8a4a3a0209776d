// The agent's configuration file (`weft agent --config FILE`), as a DaemonSet mounts it from a
// ConfigMap: YAML, one key per flag, named like the flag in camelCase (--health-port -> healthPort,
// --no-deny-log -> denyLog: false). A flag's value is a string or a number; a switch's is a
// boolean. Unknown keys are an error naming them: a misspelt key must not be silently ignored.
import { readFileSync } from "node:fs";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { z } from "zod";

/** One flag as the file may set it. */
export interface ConfigKey {
  /** camelCase, e.g. "healthPort". */
  key: string;
  /** The flag it stands for, for messages, e.g. "--health-port". */
  flag: string;
  /** A switch (true/false) rather than a flag with a value. */
  boolean: boolean;
}

export class ConfigFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigFileError";
  }
}

const scalar = z.union([z.string(), z.number().finite()]).transform((v) => String(v));

/** The file's settings, keyed by ConfigKey.key: strings for flags with values, booleans for switches. */
export function parseAgentConfig(
  text: string,
  file: string,
  keys: readonly ConfigKey[],
): Record<string, string | boolean> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigFileError(`${file}: not valid YAML: ${e instanceof YAMLParseError ? e.message : String(e)}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc))
    throw new ConfigFileError(`${file}: expected a mapping of settings (key: value), e.g. "node: node1"`);
  const known = new Map(keys.map((k) => [k.key, k]));
  const unknown = Object.keys(doc).filter((k) => !known.has(k));
  if (unknown.length)
    throw new ConfigFileError(
      `${file}: unknown setting${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `"${k}"`).join(", ")}; known: ${[...known.keys()].join(", ")}`,
    );
  const schema = z.object(Object.fromEntries(keys.map((k) => [k.key, (k.boolean ? z.boolean() : scalar).optional()])));
  const r = schema.safeParse(doc);
  if (!r.success) {
    const issues = r.error.issues.map((i) => {
      const key = String(i.path[0] ?? "");
      const k = known.get(key);
      return `"${key}" (${k?.flag ?? key}) must be ${k?.boolean ? "true or false" : "a string or a number"}`;
    });
    throw new ConfigFileError(`${file}: ${issues.join("; ")}`);
  }
  const out: Record<string, string | boolean> = {};
  for (const [k, v] of Object.entries(r.data)) if (v !== undefined) out[k] = v as string | boolean;
  return out;
}

/** Reads and parses the file; ConfigFileError names the file and what is wrong. */
export function readAgentConfig(file: string, keys: readonly ConfigKey[]): Record<string, string | boolean> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigFileError(`--config ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return parseAgentConfig(text, file, keys);
}
