// kubectl's -l/--selector syntax, parsed into a LabelSelector:
//   app=web  app==web  tier!=db  env in (a,b)  env notin (c)  owner  !owner   (comma = AND)
import { validateLabelSelector, type LabelSelector, type LabelSelectorRequirement } from "../../k8s/index.js";
import { UserError } from "../errors.js";

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

function requirement(part: string, whole: string): LabelSelectorRequirement {
  let m = /^([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)$/.exec(part);
  if (m) {
    const values = m[3].split(",").map((v) => v.trim());
    return { key: m[1], operator: m[2] === "in" ? "In" : "NotIn", values };
  }
  m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(part);
  if (m) return { key: m[1], operator: m[2] === "!=" ? "NotIn" : "In", values: [m[3]] };
  m = /^(!?)\s*([^\s!=(),]+)$/.exec(part);
  if (m) return { key: m[2], operator: m[1] ? "DoesNotExist" : "Exists" };
  throw new UserError(
    `--selector "${whole}": cannot parse "${part}": use key=value, key!=value, key in (a,b), key notin (a,b), key or !key`,
  );
}

export function parseSelector(text: string): LabelSelector {
  const parts = splitTop(text);
  if (parts.some((p) => p === "")) throw new UserError(`--selector "${text}": empty requirement`);
  const sel: LabelSelector = { matchExpressions: parts.map((p) => requirement(p, text)) };
  const errs = validateLabelSelector(sel, "selector");
  if (errs.length) throw new UserError(`--selector "${text}": ${errs[0].message}`);
  return sel;
}
