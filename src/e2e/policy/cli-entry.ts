// A CLI entry with only the policy commands, as main.ts registers them, so the tests drive the
// real commander wiring (exit codes, errors) without depending on the rest of the CLI.
import { Command } from "commander";
import { exitWithError } from "../../cli/errors.js";
import { registerExplain } from "../../cli/explain.js";
import { registerPolicy } from "../../cli/policy.js";

const program = new Command();
program
  .name("weft")
  .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith("error:") ? `weft: ${s.slice(7)}` : s) })
  .exitOverride((err) => process.exit(err.code === "commander.helpDisplayed" || err.code === "commander.help" ? 0 : 2));
registerExplain(program);
registerPolicy(program);
program.parseAsync(process.argv).catch(exitWithError);
