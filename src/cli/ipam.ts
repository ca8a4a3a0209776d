import type { Command } from "commander";
import { UserError } from "./errors.js";

// Placeholder until the command is implemented.
export function registerIpam(program: Command): void {
  program.command("ipam").description("(not yet implemented)").action(() => {
    throw new UserError("ipam: not implemented yet");
  });
}
