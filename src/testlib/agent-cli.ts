#!/usr/bin/env node
// The agent's commands (agent, cluster, status) as their own CLI, for the agent's tests: they
// run exactly what `weft agent|cluster|status` runs, independent of which commands main.ts has.
import { Command } from "commander";
import { registerAgent } from "../cli/agent.js";
import { registerCluster } from "../cli/cluster.js";
import { exitWithError } from "../cli/errors.js";
import { registerStatus } from "../cli/status.js";

const program = new Command();
program
  .name("weft")
  .exitOverride((err) => process.exit(err.code === "commander.helpDisplayed" || err.code === "commander.help" ? 0 : 2))
  .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith("error:") ? `weft: ${s.slice(7)}` : s) });
registerAgent(program);
registerCluster(program);
registerStatus(program);
program.parseAsync(process.argv).catch(exitWithError);
