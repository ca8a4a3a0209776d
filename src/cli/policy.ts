// `weft policy show --node NODE`: the node's compiled NetworkPolicy ruleset, from the store's
// objects through the same compile() and renderer the node's agent uses.
import type { Command } from "commander";
import {
  validateNamespace,
  validateNetworkPolicy,
  validatePod,
  type Namespace,
  type NetworkPolicy,
  type Pod,
  type Validated,
} from "../k8s/index.js";
import {
  compile,
  countRules,
  localPodsFromCluster,
  renderRuleset,
  type CompiledModel,
  type CompiledRule,
  type RulePeer,
  type RulePort,
} from "../policy/index.js";
import type { ClusterStore } from "../store/types.js";
import { UserError } from "./errors.js";
import { addStoreOptions, withStore, type StoreFlags } from "./store-flags.js";

export interface PolicyObjects {
  namespaces: Namespace[];
  pods: Pod[];
  policies: NetworkPolicy[];
  /** Objects left out because they do not validate ("Kind ns/name: reason"). */
  skipped: string[];
}

/** Namespaces, Pods and NetworkPolicies from the store, validated as the agent's controller does. */
export async function loadPolicyObjects(store: ClusterStore): Promise<PolicyObjects> {
  const skipped: string[] = [];
  const load = async <T>(kind: string, v: (o: unknown) => Validated<T>): Promise<T[]> => {
    const out: T[] = [];
    for (const o of await store.objects.list(kind)) {
      const r = v(o);
      if (r.ok) out.push(r.value);
      else
        skipped.push(
          `${kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}: ${r.errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`,
        );
    }
    return out;
  };
  const [namespaces, pods, policies] = await Promise.all([
    load("Namespace", validateNamespace),
    load("Pod", validatePod),
    load("NetworkPolicy", validateNetworkPolicy),
  ]);
  return { namespaces, pods, policies, skipped };
}

/** "from pods app=b in namespace x [x/b]" / "to 10.0.0.0/8 except 10.1.0.0/16" / "from anywhere". */
export function describePeer(
  model: CompiledModel,
  peer: RulePeer,
  direction: "ingress" | "egress",
  withMembers = true,
): string {
  const dir = direction === "ingress" ? "from" : "to";
  if (peer.kind === "any") return `${dir} anywhere`;
  if (peer.kind === "pods") {
    const s = model.podSets.find((x) => x.id === peer.set);
    if (!s) return `${dir} pod set ${peer.set}`;
    return `${dir} ${s.description}${withMembers ? ` [${s.members.join(", ") || "no pods now"}]` : ""}`;
  }
  const c = model.cidrSets.find((x) => x.id === peer.set);
  return c
    ? `${dir} ${c.cidr}${c.except.length ? ` except ${c.except.join(", ")}` : ""}`
    : `${dir} CIDR set ${peer.set}`;
}

export function describePort(port: RulePort): string {
  switch (port.kind) {
    case "any":
      return "all ports";
    case "protocol":
      return `${port.protocol} (all ports)`;
    case "ports":
      return port.ranges.map(([a, b]) => `${port.protocol}/${a === b ? a : `${a}-${b}`}`).join(", ");
    case "named":
      return `${port.protocol}/${port.name} (named port)`;
  }
}

export function describeRule(model: CompiledModel, rule: CompiledRule, withMembers = true): string {
  const peers = rule.peers.map((p) => describePeer(model, p, rule.direction, withMembers)).join(" or ");
  return `${rule.policy.namespace}/${rule.policy.name} ${rule.direction}[${rule.index}]: ${peers}; ${rule.ports.map(describePort).join(", ")}`;
}

/** A readable summary of a node's model. */
export function formatModel(model: CompiledModel): string {
  const out: string[] = [];
  out.push(
    `node ${model.node}: ${model.localPods.length} local pod(s), ${model.policies.length} policy(ies) selecting them, ${model.groups.length} isolation group(s), ${countRules(model)} nft rules`,
  );
  out.push("", "pods:");
  if (model.localPods.length === 0) out.push("  (none)");
  for (const lp of model.localPods) {
    const side = (s: typeof lp.ingress) =>
      s.isolated ? `isolated by ${s.policies.map((p) => `${p.namespace}/${p.name}`).join(", ")}` : "not isolated";
    out.push(`  ${lp.key} [${lp.ips.join(", ") || "no addresses"}]`);
    out.push(`    ingress: ${side(lp.ingress)}`);
    out.push(`    egress:  ${side(lp.egress)}`);
  }
  out.push("", "policies:");
  if (model.policies.length === 0) out.push("  (none select a pod on this node)");
  for (const p of model.policies) {
    out.push(`  ${p.ref.namespace}/${p.ref.name} (selects ${p.selects.join(", ")})`);
    for (const [dir, side] of [
      ["ingress", p.ingress],
      ["egress", p.egress],
    ] as const) {
      if (!side) continue;
      if (side.rules.length === 0) out.push(`    ${dir}: deny all (no rules)`);
      for (const r of side.rules)
        out.push(
          `    ${dir}[${r.index}]: ${r.peers.map((x) => describePeer(model, x, dir)).join(" or ")}; ${r.ports.map(describePort).join(", ")}  (counter ${r.counter})`,
        );
    }
  }
  if (model.groups.length) {
    out.push("", "isolation groups (what a pod's packets are checked against, then dropped and logged):");
    for (const g of model.groups) {
      const names = g.policies
        .map((id) => model.policies.find((p) => p.id === id))
        .map((p) => (p ? `${p.ref.namespace}/${p.ref.name}` : "?"));
      out.push(
        `  ${g.id} ${g.direction}: ${names.join(", ")} -> pods ${g.pods.join(", ")}  (deny counter ${g.denyCounter})`,
      );
    }
  }
  return out.join("\n") + "\n";
}

export function registerPolicy(program: Command): void {
  const policy = program.command("policy").description("NetworkPolicy enforcement: inspect what a node enforces");
  addStoreOptions(
    policy
      .command("show")
      .description(
        "print a node's compiled NetworkPolicy ruleset (readable; --nft for the nft script, -o json for the model)",
      )
      .requiredOption("--node <name>", "the node whose ruleset to show")
      .option(
        "--nft",
        "print the nft script the node's agent loads (one atomic transaction; pod interface names here are derived, the node uses its real veths)",
      )
      .option("-o, --output <format>", "output format: json (the compiled model)"),
  ).action(async (o: StoreFlags & { node: string; nft?: boolean; output?: string }) => {
    if (o.output !== undefined && o.output !== "json") throw new UserError(`-o ${o.output}: only "json" is supported`);
    if (o.output && o.nft) throw new UserError("--nft and -o json exclude each other");
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(o.node))
      throw new UserError(`--node "${o.node}" is not a valid node name`);
    const objs = await withStore(o, loadPolicyObjects, { mustExist: true });
    for (const s of objs.skipped) process.stderr.write(`weft: skipped invalid object ${s}\n`);
    const model = compile({
      namespaces: objs.namespaces,
      pods: objs.pods,
      policies: objs.policies,
      node: o.node,
      local: localPodsFromCluster(objs.pods, o.node),
    });
    if (o.output === "json") process.stdout.write(JSON.stringify(model, null, 2) + "\n");
    else if (o.nft) process.stdout.write(renderRuleset(model));
    else process.stdout.write(formatModel(model));
  });
}
