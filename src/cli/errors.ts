// One place that turns a failure into the CLI contract's "one-line, specific error, non-zero exit".

/** An error whose message is meant for the person at the terminal, as is. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "UserError";
  }
}

export function exitWithError(err: unknown): never {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`weft: ${msg.split("\n")[0]}\n`);
  process.exit(err instanceof UserError ? err.exitCode : 1);
}
