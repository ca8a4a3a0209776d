// Why a call to the agent failed, typed so each caller can pick its answer: the plugin maps them to
// CNI codes (11, 50, 5), the CLI to its exit codes.

/** Nothing listens on the socket (agent not running, wrong path, no permission). */
export class AgentUnreachable extends Error {
  constructor(
    readonly socketPath: string,
    readonly reason: string,
  ) {
    super(`cannot reach the weft agent at ${socketPath} (${reason})`);
    this.name = "AgentUnreachable";
  }
}

/** The agent did not answer in time (or, with connected false, did not even accept). */
export class AgentTimeout extends Error {
  constructor(
    readonly socketPath: string,
    readonly timeoutMs: number,
    readonly connected: boolean,
  ) {
    super(
      connected
        ? `the weft agent on ${socketPath} did not answer within ${timeoutMs} ms`
        : `connecting to the weft agent on ${socketPath} took longer than ${timeoutMs} ms`,
    );
    this.name = "AgentTimeout";
  }
}

/** The agent answered something that is not a protocol response. */
export class AgentProtocolError extends Error {
  constructor(
    readonly socketPath: string,
    detail: string,
  ) {
    super(`the weft agent on ${socketPath} sent an invalid answer: ${detail}`);
    this.name = "AgentProtocolError";
  }
}
