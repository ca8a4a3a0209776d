#!/usr/bin/env node
// weft's command line. Each command lives in its own file and registers itself here.
import { Command } from "commander";
import { exitWithError } from "./errors.js";
import { registerAgent } from "./agent.js";
import { registerInstallCni } from "./install-cni.js";
import { registerIpam } from "./ipam.js";
import { registerLab } from "./lab.js";
import { registerObjects } from "./objects.js";
import { registerCluster } from "./cluster.js";
import { registerStatus } from "./status.js";
import { registerExplain } from "./explain.js";
import { registerPolicy } from "./policy.js";

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

registerAgent(program);
registerInstallCni(program);
registerIpam(program);
registerCluster(program);
registerObjects(program);
registerStatus(program);
registerLab(program);
registerExplain(program);
registerPolicy(program);

program.parseAsync(process.argv).catch(exitWithError);
