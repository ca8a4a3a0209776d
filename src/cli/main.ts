#!/usr/bin/env node
// weft's command line. Each command lives in its own file and registers itself here.
import { Command } from "commander";
import { exitWithError } from "./errors.js";

type Register = (program: Command) => void;

// Each command's module loads only when that command runs: the agent must not pay, at every
// start, for the lab's, the manifests' or the policy printer's dependencies (yaml, zod schemas,
// prom-client: about 100 ms of start-up and 30 MB of memory). Help and unknown commands load all.
// In help order; `names` are the top-level commands a module registers.
const COMMANDS: { names: string[]; load: () => Promise<Register> }[] = [
  { names: ["agent"], load: async () => (await import("./agent.js")).registerAgent },
  { names: ["install-cni"], load: async () => (await import("./install-cni.js")).registerInstallCni },
  { names: ["uninstall"], load: async () => (await import("./uninstall.js")).registerUninstall },
  { names: ["ipam"], load: async () => (await import("./ipam.js")).registerIpam },
  { names: ["cluster"], load: async () => (await import("./cluster.js")).registerCluster },
  {
    names: ["apply", "delete", "get", "label"],
    load: async () => (await import("./objects/index.js")).registerObjects,
  },
  { names: ["status"], load: async () => (await import("./status.js")).registerStatus },
  { names: ["lab"], load: async () => (await import("./lab.js")).registerLab },
  { names: ["explain"], load: async () => (await import("./explain.js")).registerExplain },
  { names: ["policy"], load: async () => (await import("./policy.js")).registerPolicy },
];

const program = new Command();
program
  .name("weft")
  .description("weft: a Kubernetes pod network")
  .showHelpAfterError(false)
  .configureOutput({
    // commander's own parse errors become the contract's one-line error.
    writeErr: (s) => process.stderr.write(s.startsWith("error:") ? `weft: ${s.slice(7)}` : s),
  })
  .exitOverride((err) => {
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") {
      process.exit(0);
    }
    process.exit(2);
  });

async function main(): Promise<void> {
  const first = process.argv[2];
  const one = COMMANDS.find((c) => first !== undefined && c.names.includes(first));
  const registers = await Promise.all((one ? [one] : COMMANDS).map((c) => c.load()));
  for (const r of registers) r(program);
  await program.parseAsync(process.argv);
}

main().catch(exitWithError);
