// `weft ipam check`: asks the agent for leaks and conflicts in this node's address allocation.
import type { Command } from "commander";
import { callAgent } from "../agent-api/client.js";
import { AgentUnreachable } from "../agent-api/errors.js";
import type { IpamCheckReport } from "../agent-api/schema.js";
import { UserError } from "./errors.js";
import { DEFAULT_SOCKET } from "./install-cni.js";

function printReport(r: IpamCheckReport): void {
  const out: string[] = [`allocations: ${r.allocations}`];
  for (const f of r.fixed ?? []) out.push(`fixed: ${f}`);
  out.push(r.leaked.length ? `leaked: ${r.leaked.length}` : "leaked: none");
  for (const l of r.leaked) {
    const who =
      l.kind === "allocation"
        ? `${l.network}/${l.containerId}/${l.ifname} [${(l.addresses ?? []).join(", ")}]`
        : `link ${l.hostIf}`;
    out.push(`  ${who}: ${l.reason}`);
  }
  out.push(r.conflicts.length ? `conflicts: ${r.conflicts.length}` : "conflicts: none");
  for (const c of r.conflicts) out.push(`  ${c.address}: ${c.reason}`);
  process.stdout.write(out.join("\n") + "\n");
}

export function registerIpam(program: Command): void {
  const ipam = program.command("ipam").description("inspect this node's pod address allocation");
  ipam
    .command("check")
    .description("report leaked and conflicting allocations (exit 0 clean, 1 problems found)")
    .option("--socket <path>", "the agent's unix socket", DEFAULT_SOCKET)
    .option("--fix", "repair what is found (release leaks, delete orphan links and wrong routes)")
    .option("-o, --output <format>", "output format: json")
    .action(async (o: { socket: string; fix?: boolean; output?: string }) => {
      if (o.output !== undefined && o.output !== "json")
        throw new UserError(`-o ${o.output}: only "json" is supported`);
      let res;
      try {
        res = await callAgent(o.socket, { op: "ipam-check", fix: o.fix === true });
      } catch (e) {
        if (e instanceof AgentUnreachable) throw new UserError(e.message, 2);
        throw e;
      }
      if (!res.ok) throw new UserError(`ipam check: ${res.msg}`, 2);
      const report = res.report ?? { allocations: 0, leaked: [], conflicts: [] };
      if (o.output === "json") process.stdout.write(JSON.stringify(report) + "\n");
      else printReport(report);
      process.exitCode = report.leaked.length || report.conflicts.length ? 1 : 0;
    });
}
