// Reading manifests for `apply -f` and `delete -f`: files, directories (their .yaml/.yml/.json files)
// or stdin ("-"); YAML or JSON; several documents per file; a List's items are objects of their own.
// Every object remembers where it came from, so errors can say "f.yaml (document 2)".
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { UserError } from "../errors.js";

export interface ManifestObject {
  /** "f.yaml (document 2)", "stdin (document 1, item 3)". */
  where: string;
  value: Record<string, unknown>;
}

function readSource(path: string): Array<{ name: string; text: string }> {
  if (path === "-") return [{ name: "stdin", text: readFileSync(0, "utf8") }];
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UserError(`the path "${path}" does not exist`, 1);
  }
  if (st.isDirectory()) {
    const files = readdirSync(path)
      .filter((f) => /\.(ya?ml|json)$/i.test(f))
      .sort();
    if (files.length === 0) throw new UserError(`the directory "${path}" has no .yaml, .yml or .json files`, 1);
    return files.map((f) => ({ name: join(path, f), text: readFileSync(join(path, f), "utf8") }));
  }
  try {
    return [{ name: path, text: readFileSync(path, "utf8") }];
  } catch (e) {
    throw new UserError(`cannot read "${path}": ${e instanceof Error ? e.message : String(e)}`, 1);
  }
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The documents of one text: JSON (one value) or YAML (any number of documents); empty ones dropped. */
function parseText(name: string, text: string): Array<{ doc: number; value: unknown }> {
  const t = text.trim();
  if (t.startsWith("{") || t.startsWith("[")) {
    try {
      return [{ doc: 1, value: JSON.parse(t) }];
    } catch {
      // Not strict JSON: YAML flow syntax is a superset, let the YAML parser have it.
    }
  }
  const out: Array<{ doc: number; value: unknown }> = [];
  parseAllDocuments(text).forEach((d, i) => {
    const err = d.errors[0];
    if (err)
      throw new UserError(`${name} (document ${i + 1}): not valid YAML or JSON: ${err.message.split("\n")[0]}`, 1);
    const value: unknown = d.toJS({ maxAliasCount: 100 });
    if (value !== null && value !== undefined) out.push({ doc: i + 1, value });
  });
  return out;
}

/** All objects of the given -f arguments, in order. */
export function readManifests(paths: readonly string[]): ManifestObject[] {
  const out: ManifestObject[] = [];
  for (const p of paths) {
    for (const src of readSource(p)) {
      for (const { doc, value } of parseText(src.name, src.text)) {
        const where = `${src.name} (document ${doc})`;
        if (!isMap(value))
          throw new UserError(
            `${where}: expected an object with apiVersion and kind, got ${Array.isArray(value) ? "a list" : typeof value}`,
            1,
          );
        if (typeof value.kind === "string" && value.kind.endsWith("List") && Array.isArray(value.items)) {
          value.items.forEach((item: unknown, j: number) => {
            const w = `${src.name} (document ${doc}, item ${j})`;
            if (!isMap(item)) throw new UserError(`${w}: expected an object with apiVersion and kind`, 1);
            out.push({ where: w, value: item });
          });
        } else {
          out.push({ where, value });
        }
      }
    }
  }
  if (out.length === 0)
    throw new UserError(
      `no objects passed: ${paths.map((p) => (p === "-" ? "stdin" : p)).join(", ")} holds no documents`,
      1,
    );
  return out;
}
