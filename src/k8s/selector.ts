// Label selector matching with Kubernetes semantics: matchLabels and matchExpressions are ANDed;
// an empty selector ({}) matches everything. Assumes a validated selector.
import type { LabelSelector, LabelSelectorRequirement } from "./types.js";

export type Labels = Readonly<Record<string, string>>;

function requirementMatches(r: LabelSelectorRequirement, labels: Labels): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, r.key);
  switch (r.operator) {
    case "In":
      return has && (r.values ?? []).includes(labels[r.key]);
    case "NotIn":
      // As in apimachinery: a missing key satisfies NotIn.
      return !has || !(r.values ?? []).includes(labels[r.key]);
    case "Exists":
      return has;
    case "DoesNotExist":
      return !has;
    default:
      return false; // unknown operators never match (validation rejects them first)
  }
}

export function selectorMatches(sel: LabelSelector, labels: Labels | undefined): boolean {
  const l = labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    if (!Object.prototype.hasOwnProperty.call(l, k) || l[k] !== v) return false;
  }
  return (sel.matchExpressions ?? []).every((r) => requirementMatches(r, l));
}

export function selectorIsEmpty(sel: LabelSelector): boolean {
  return Object.keys(sel.matchLabels ?? {}).length === 0 && (sel.matchExpressions ?? []).length === 0;
}

/** A stable text for a selector: equal selectors (in any key order) give equal keys. */
export function selectorKey(sel: LabelSelector): string {
  const reqs: string[] = [];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) reqs.push(`${k}=${v}`);
  for (const r of sel.matchExpressions ?? []) {
    reqs.push(`${r.key} ${r.operator} (${[...new Set(r.values ?? [])].sort().join(",")})`);
  }
  return [...new Set(reqs)].sort().join(";");
}

/** Human-readable form, like kubectl's: "app=a,tier in (x,y)"; "<all>" for the empty selector. */
export function selectorString(sel: LabelSelector): string {
  if (selectorIsEmpty(sel)) return "<all>";
  const parts: string[] = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const r of sel.matchExpressions ?? []) {
    if (r.operator === "Exists") parts.push(r.key);
    else if (r.operator === "DoesNotExist") parts.push(`!${r.key}`);
    else parts.push(`${r.key} ${r.operator === "In" ? "in" : "notin"} (${(r.values ?? []).join(",")})`);
  }
  return parts.join(",");
}
