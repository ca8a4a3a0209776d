// explain(): would a connection from one pod to another be allowed, and which policies and rules
// decide it. Computed from the same compiled models the nodes render (source node: egress of the
// source pod; destination node: ingress of the destination pod).
import { parseIp } from "../net/ip.js";
import type { Namespace, NetworkPolicy, Pod, Protocol } from "../k8s/types.js";
import { compile, localPodsFromCluster, podAddresses, podKey } from "./compile.js";
import { evaluate, type DirectionVerdict } from "./evaluate.js";
import type { CompiledModel, Family } from "./model.js";

export interface ExplainInput {
  namespaces: readonly Namespace[];
  pods: readonly Pod[];
  policies: readonly NetworkPolicy[];
  /** Models nodes already compiled (by node name); others are compiled from the objects. */
  models?: ReadonlyMap<string, CompiledModel>;
}

export interface ExplainResult {
  from: string;
  to: string;
  fromAddr: string;
  toAddr: string;
  port: number;
  protocol: Protocol;
  allowed: boolean;
  egress: DirectionVerdict;
  ingress: DirectionVerdict;
  /** One line for a person. */
  summary: string;
}

export class ExplainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ExplainError";
  }
}

function findPod(pods: readonly Pod[], ref: string): Pod {
  const [ns, name] = ref.includes("/") ? ref.split("/", 2) : ["default", ref];
  const pod = pods.find((p) => (p.metadata.namespace ?? "default") === ns && p.metadata.name === name);
  if (!pod) throw new ExplainError(`pod ${ns}/${name} not found`);
  return pod;
}

export function explain(
  input: ExplainInput,
  fromRef: string,
  toRef: string,
  port: number,
  protocol: Protocol = "TCP",
  family?: Family,
): ExplainResult {
  const from = findPod(input.pods, fromRef);
  const to = findPod(input.pods, toRef);
  const fromKey = podKey(from.metadata.namespace ?? "default", from.metadata.name);
  const toKey = podKey(to.metadata.namespace ?? "default", to.metadata.name);
  const pick = (pod: Pod, key: string): string => {
    const a = podAddresses(pod);
    const fam = family ?? (a.v4.length ? 4 : 6);
    const addr = (fam === 4 ? a.v4 : a.v6)[0];
    if (!addr) throw new ExplainError(`pod ${key} has no IPv${fam} address`);
    return addr;
  };
  const fromAddr = pick(from, fromKey);
  const toAddr = pick(to, toKey);
  if (family === undefined && parseIp(fromAddr)?.family !== parseIp(toAddr)?.family) {
    throw new ExplainError(`pods ${fromKey} and ${toKey} share no address family`);
  }
  const modelFor = (pod: Pod, key: string): CompiledModel => {
    const node = pod.spec.nodeName;
    if (!node) throw new ExplainError(`pod ${key} is not scheduled to a node`);
    return input.models?.get(node) ?? compile({ ...input, node, local: localPodsFromCluster(input.pods, node) });
  };
  const egress = evaluate(modelFor(from, fromKey), "egress", fromKey, {
    local: fromAddr,
    remote: toAddr,
    protocol,
    port,
  });
  const ingress = evaluate(modelFor(to, toKey), "ingress", toKey, { local: toAddr, remote: fromAddr, protocol, port });
  const self = fromKey === toKey;
  // A pod reaching its own address never leaves its network namespace (loopback): no policy applies.
  const allowed = self || (egress.allowed && ingress.allowed);
  const what = `${fromKey} -> ${toKey} ${protocol}/${port}`;
  const summary = self
    ? `${what}: allowed (a pod's traffic to itself stays on its loopback; policies do not apply)`
    : allowed
      ? `${what}: allowed (egress: ${egress.reason}; ingress: ${ingress.reason})`
      : `${what}: denied (${[egress, ingress]
          .filter((v) => !v.allowed)
          .map((v) => `${v.direction}: ${v.reason}`)
          .join("; ")})`;
  return { from: fromKey, to: toKey, fromAddr, toAddr, port, protocol, allowed, egress, ingress, summary };
}
