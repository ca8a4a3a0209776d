// Public surface of the policy engine: compile (objects -> node model), render (model -> nft),
// incremental element updates, evaluation and explain.
export * from "./model.js";
export {
  compile,
  localPodsFromCluster,
  podAddresses,
  podIsolated,
  podKey,
  shortId,
  type CompileInput,
} from "./compile.js";
export {
  renderRuleset,
  renderElementUpdate,
  renderModelChange,
  renderDelete,
  buildRuleset,
  countRules,
  parseCounters,
  type RenderOptions,
  type Ruleset,
} from "./nft.js";
export { IncrementalCompiler, type IncrementalResult, type PodChanges } from "./incremental.js";
export { evaluate, ruleMatches, type DirectionVerdict, type Packet, type RuleMatch } from "./evaluate.js";
export { explain, ExplainError, type ExplainInput, type ExplainResult } from "./explain.js";
