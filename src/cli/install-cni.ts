// `weft install-cni`: puts the CNI plugin executables and weft's conflist where a container
// runtime looks for them (src/cni-install does the work; this is its command line).
import type { Command } from "commander";
import { DEFAULT_SOCKET } from "../cni/config.js";
import { DEFAULT_NETWORK, InstallError, installCni } from "../cni-install/index.js";
import { UserError } from "./errors.js";

/** Where the agent listens unless told otherwise (the plugin's own default); cli/agent.ts uses it. */
export { DEFAULT_SOCKET };

export function registerInstallCni(program: Command): void {
  program
    .command("install-cni")
    .description("install the CNI plugin executable (BIN_DIR/weft) and its conflist (CONF_DIR/10-weft.conflist)")
    .requiredOption("--bin-dir <dir>", "directory the container runtime runs CNI plugins from (e.g. /opt/cni/bin)")
    .requiredOption(
      "--conf-dir <dir>",
      "directory the container runtime reads CNI network configs from (e.g. /etc/cni/net.d)",
    )
    .option("--socket <path>", "the agent's unix socket, written into the conflist", DEFAULT_SOCKET)
    .option("--name <net>", "CNI network name", DEFAULT_NETWORK)
    .option("--no-portmap", "leave the portmap plugin (hostPort mappings) out of the chain")
    .option(
      "--prepare-socket-dir",
      "also create the socket's directory mode 0700, or tighten it to 0700 (a hostPath the kubelet makes is 0755)",
    )
    .action(
      async (opts: {
        binDir: string;
        confDir: string;
        socket: string;
        name: string;
        portmap: boolean;
        prepareSocketDir?: boolean;
      }) => {
        const r = await installCni(opts).catch((e: unknown) => {
          throw e instanceof InstallError ? new UserError(e.message) : e;
        });
        const say = (changed: boolean, what: string) => `${changed ? "wrote" : "unchanged"} ${what}\n`;
        process.stdout.write(say(r.changed.full || r.changed.plugin, r.plugin) + say(r.changed.conflist, r.conflist));
      },
    );
}
