// The per-node policy controller, its datapath, metrics and deny log: what the agent wires in.
export {
  PolicyController,
  PolicyApplyError,
  PolicyControllerStopped,
  type PolicyControllerOptions,
  type CounterReading,
  type ApplyKind,
  type ControllerStats,
} from "./controller.js";
export {
  createPolicyMetrics,
  startMetricsServer,
  type PolicyMetrics,
  type MetricsServer,
  type CounterSource,
} from "./metrics.js";
export {
  DenyLogger,
  parseNflogRecord,
  PcapReader,
  RateLimiter,
  type DeniedPacket,
  type DenyLogOptions,
} from "./denylog.js";
export {
  createPolicyDatapath,
  isPolicyDatapathName,
  NftDatapath,
  POLICY_DATAPATHS,
  type PolicyDatapath,
  type PolicyDatapathName,
  type NftDatapathOptions,
  type CounterValue,
  type DatapathUpdate,
} from "./datapath/index.js";
export { ObjectCache, type ObjectSnapshot } from "./objects.js";
export { startPolicyEnforcement, type PolicyEnforcement, type PolicyEnforcementOptions } from "./run.js";
