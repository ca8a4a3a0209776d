import type { Command } from "commander";
import { UserError } from "./errors.js";

// Placeholder until the command is implemented.
export function registerInstallCni(program: Command): void {
  program.command("install-cni").description("(not yet implemented)").action(() => {
    throw new UserError("install-cni: not implemented yet");
  });
}
