// `weft uninstall`: removes what weft left on a node after its DaemonSet was deleted (src/agent/
// uninstall.ts does the work). Without --yes it only lists what it would remove.
import type { Command } from "commander";
import { DEFAULT_SOCKET } from "../cni/config.js";
import { uninstall, UninstallRefused, type UninstallPlan } from "../agent/uninstall.js";
import { DEFAULT_STATE_DIR } from "./agent.js";
import { UserError } from "./errors.js";

interface UninstallFlags {
  binDir: string;
  confDir: string;
  stateDir: string;
  socket: string;
  yes?: boolean;
  realNode?: boolean;
}

export function registerUninstall(program: Command): void {
  program
    .command("uninstall")
    .description(
      "remove weft from this node after its DaemonSet is deleted: conflist, plugin binaries, nft tables, peer routes, vxlan device, pods' host veths, state and socket directories",
    )
    .option("--bin-dir <dir>", "where install-cni put the plugin binaries", "/opt/cni/bin")
    .option("--conf-dir <dir>", "where install-cni put 10-weft.conflist", "/etc/cni/net.d")
    .option("--state-dir <dir>", "the agent's state directory", DEFAULT_STATE_DIR)
    .option("--socket <path>", "the agent's socket (the DEL queue is beside it)", DEFAULT_SOCKET)
    .option("--yes", "remove; without it, only list what would be removed")
    .option("--real-node", "this is a node's own network namespace (that of PID 1): allow changing it")
    .action(async (o: UninstallFlags) => {
      const plan = await uninstall({
        binDir: o.binDir,
        confDir: o.confDir,
        stateDir: o.stateDir,
        socket: o.socket,
        yes: o.yes === true,
        realNode: o.realNode === true,
      }).catch((e: unknown) => {
        throw e instanceof UninstallRefused ? new UserError(e.message, 1) : e;
      });
      process.stdout.write(describe(plan, o.yes === true));
    });
}

function describe(p: UninstallPlan, done: boolean): string {
  const verb = done ? "removed" : "would remove";
  const lines = [
    ...p.files.map((f) => `${verb} file ${f}`),
    ...p.nftTables.map((t) => `${verb} nft table ${t.family} ${t.name}`),
    ...p.routes.map((r) => `${verb} route ${r}`),
    ...p.vxlanLinks.map((l) => `${verb} link ${l}`),
    ...p.podLinks.map((l) => `${verb} link ${l} (a pod's host veth: that pod has no network ${done ? "now" : "then"})`),
    ...p.dirs.map((d) => `${verb} directory ${d}`),
  ];
  if (lines.length === 0) lines.push("nothing of weft found on this node");
  else if (!done) lines.push("nothing changed: run again with --yes to remove these");
  return lines.join("\n") + "\n";
}
