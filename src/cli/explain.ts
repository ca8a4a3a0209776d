// `weft explain NS/FROM NS/TO --port P`: would this connection be allowed, and which policies and
// rules decide it. Computed with the same compile() the nodes' agents program the datapath from:
// egress at the source pod's node, ingress at the destination pod's node.
// Exit status: 0 allowed, 1 denied, 2 error (like `lab probe`: 0 connected, 1 not).
import type { Command } from "commander";
import { PROTOCOLS, type Protocol } from "../k8s/index.js";
import {
  compile,
  explain,
  ExplainError,
  localPodsFromCluster,
  type CompiledModel,
  type DirectionVerdict,
  type ExplainResult,
} from "../policy/index.js";
import { UserError } from "./errors.js";
import { describeRule, loadPolicyObjects } from "./policy.js";
import { addStoreOptions, withStore, type StoreFlags } from "./store-flags.js";

function parsePodRef(what: string, v: string): string {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(v);
  if (!m) throw new UserError(`${what} "${v}": give NAMESPACE/POD`);
  return v;
}

function formatVerdict(v: DirectionVerdict, node: string, model: CompiledModel): string[] {
  const head = `  ${v.direction.padEnd(7)} at ${v.pod} (node ${node}): `;
  if (!v.isolated) return [head + "allowed: no NetworkPolicy selects the pod for " + v.direction];
  const by = v.policies.map((p) => `${p.namespace}/${p.name}`).join(", ");
  if (v.allowed) {
    const lines = [head + `allowed (the pod is isolated by ${by})`];
    for (const m of v.allowedBy) {
      const rule = model.policies.find((p) => p.ref.namespace === m.policy.namespace && p.ref.name === m.policy.name)?.[
        v.direction
      ]?.rules[m.rule];
      lines.push(
        `    by ${rule ? describeRule(model, rule, false) : `${m.policy.namespace}/${m.policy.name} ${v.direction}[${m.rule}]`}`,
      );
    }
    return lines;
  }
  return [
    head +
      `denied: isolated by ${by}, and no ${v.direction} rule of theirs matches (dropped and counted by ${v.denyCounter})`,
  ];
}

export function formatExplain(
  r: ExplainResult,
  nodes: { from: string; to: string },
  models: ReadonlyMap<string, CompiledModel>,
): string {
  const lines = [
    `${r.from} -> ${r.to} ${r.protocol}/${r.port} (${r.fromAddr} -> ${r.toAddr}): ${r.allowed ? "ALLOWED" : "DENIED"}`,
  ];
  if (r.from === r.to) lines.push("  a pod's traffic to itself stays on its loopback; policies do not apply");
  else {
    lines.push(...formatVerdict(r.egress, nodes.from, models.get(nodes.from)!));
    lines.push(...formatVerdict(r.ingress, nodes.to, models.get(nodes.to)!));
  }
  return lines.join("\n") + "\n";
}

export function registerExplain(program: Command): void {
  addStoreOptions(
    program
      .command("explain")
      .description(
        "would a connection between two pods be allowed, and which NetworkPolicies and rules decide it (exit 0 allowed, 1 denied, 2 error)",
      )
      .argument("<from>", "source pod, NAMESPACE/POD")
      .argument("<to>", "destination pod, NAMESPACE/POD")
      .requiredOption("--port <port>", "destination port (1-65535)")
      .option("--protocol <protocol>", "TCP, UDP or SCTP", "TCP")
      .option("--family <family>", "address family to use: 4 or 6 (default: the pods' first address)")
      .option("-o, --output <format>", "output format: json"),
  ).action(
    async (
      fromArg: string,
      toArg: string,
      o: StoreFlags & { port: string; protocol: string; family?: string; output?: string },
    ) => {
      if (o.output !== undefined && o.output !== "json")
        throw new UserError(`-o ${o.output}: only "json" is supported`);
      const from = parsePodRef("FROM", fromArg);
      const to = parsePodRef("TO", toArg);
      const port = Number(o.port);
      if (!/^\d+$/.test(o.port) || port < 1 || port > 65535)
        throw new UserError(`--port ${o.port}: must be an integer from 1 to 65535`);
      const protocol = o.protocol.toUpperCase() as Protocol;
      if (!PROTOCOLS.includes(protocol)) throw new UserError(`--protocol ${o.protocol}: use TCP, UDP or SCTP`);
      let family: 4 | 6 | undefined;
      if (o.family !== undefined) {
        if (o.family !== "4" && o.family !== "6") throw new UserError(`--family ${o.family}: use 4 or 6`);
        family = o.family === "4" ? 4 : 6;
      }
      const objs = await withStore(o, loadPolicyObjects, { mustExist: true });
      for (const s of objs.skipped) process.stderr.write(`weft: skipped invalid object ${s}\n`);
      const nodeOf = (ref: string): string => {
        const [ns, name] = ref.split("/");
        const pod = objs.pods.find((p) => (p.metadata.namespace ?? "default") === ns && p.metadata.name === name);
        if (!pod) throw new UserError(`pod ${ref} not found`);
        if (!pod.spec.nodeName) throw new UserError(`pod ${ref} is not scheduled to a node (spec.nodeName is empty)`);
        return pod.spec.nodeName;
      };
      const nodes = { from: nodeOf(from), to: nodeOf(to) };
      // The node models, compiled once here and handed to explain() so the text and the verdict agree.
      const models = new Map<string, CompiledModel>();
      for (const node of new Set([nodes.from, nodes.to])) {
        models.set(
          node,
          compile({
            namespaces: objs.namespaces,
            pods: objs.pods,
            policies: objs.policies,
            node,
            local: localPodsFromCluster(objs.pods, node),
          }),
        );
      }
      let r: ExplainResult;
      try {
        r = explain({ ...objs, models }, from, to, port, protocol, family);
      } catch (e) {
        if (e instanceof ExplainError) throw new UserError(e.message);
        throw e;
      }
      if (o.output === "json")
        process.stdout.write(JSON.stringify({ ...r, fromNode: nodes.from, toNode: nodes.to }) + "\n");
      else process.stdout.write(formatExplain(r, nodes, models));
      process.exitCode = r.allowed ? 0 : 1;
    },
  );
}
