import type { Command } from "commander";
import { UserError } from "./errors.js";

// Placeholder until the command is implemented.
export function registerAgent(program: Command): void {
  program.command("agent").description("(not yet implemented)").action(() => {
    throw new UserError("agent: not implemented yet");
  });
}
