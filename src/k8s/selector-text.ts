// kubectl's -l/--selector syntax, parsed into a LabelSelector:
//   app=web  app==web  tier!=db  env in (a,b)  env notin (c)  owner  !owner   (comma = AND)
// Used by `weft get/delete -l` and by the BGP objects' nodeSelector/peerSelector fields.
import type { LabelSelector, LabelSelectorRequirement } from "./types.js";
import { validateLabelSelector } from "./validation.js";

/** Splits at commas outside parentheses. */
function splitTop(text: string): string[] {
  const out: string[] = [];
  let depth = 0,
    start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "(") depth++;
    else if (text[i] === ")") depth--;
    else if (text[i] === "," && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out.map((s) => s.trim());
}

function requirement(part: string): LabelSelectorRequirement | null {
  let m = /^([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)$/.exec(part);
  if (m) {
    const values = m[3].split(",").map((v) => v.trim());
    return { key: m[1], operator: m[2] === "in" ? "In" : "NotIn", values };
  }
  m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(part);
  if (m) return { key: m[1], operator: m[2] === "!=" ? "NotIn" : "In", values: [m[3]] };
  m = /^(!?)\s*([^\s!=(),]+)$/.exec(part);
  if (m) return { key: m[2], operator: m[1] ? "DoesNotExist" : "Exists" };
  return null;
}

/** The selector a text means, or what is wrong with it (without the text itself: callers say where it came from). */
export function parseSelectorText(text: string): { ok: true; selector: LabelSelector } | { ok: false; error: string } {
  const parts = splitTop(text);
  if (parts.some((p) => p === "")) return { ok: false, error: "empty requirement" };
  const reqs: LabelSelectorRequirement[] = [];
  for (const p of parts) {
    const r = requirement(p);
    if (!r)
      return {
        ok: false,
        error: `cannot parse "${p}": use key=value, key!=value, key in (a,b), key notin (a,b), key or !key`,
      };
    reqs.push(r);
  }
  const sel: LabelSelector = { matchExpressions: reqs };
  const errs = validateLabelSelector(sel, "selector");
  if (errs.length) return { ok: false, error: errs[0].message };
  return { ok: true, selector: sel };
}
