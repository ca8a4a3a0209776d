// kubectl's -l/--selector syntax (the parser is src/k8s/selector-text.ts, shared with the BGP objects).
import { parseSelectorText, type LabelSelector } from "../../k8s/index.js";
import { UserError } from "../errors.js";

export function parseSelector(text: string): LabelSelector {
  const r = parseSelectorText(text);
  if (!r.ok) throw new UserError(`--selector "${text}": ${r.error}`);
  return r.selector;
}
