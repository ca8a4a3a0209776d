// Reads the network configuration from stdin, with a cap: the plugin must fail cleanly (code 6)
// rather than buffer whatever a broken runtime streams at it.
import { MAX_CONFIG_BYTES } from "../agent-api/limits.js";
import { decodeFailure, ioFailure } from "../cni/errors.js";

/** The same cap the agent holds a forwarded call's stdin to (src/agent-api/limits.ts). */
export const MAX_STDIN_BYTES = MAX_CONFIG_BYTES;

export function readStdin(limit = MAX_STDIN_BYTES): Promise<Buffer> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        stdin.off("data", onData);
        stdin.destroy();
        reject(decodeFailure(`network configuration on stdin is larger than ${limit} bytes`));
        return;
      }
      chunks.push(c);
    };
    stdin.on("data", onData);
    stdin.once("end", () => resolve(Buffer.concat(chunks)));
    stdin.once("error", (e) => reject(ioFailure("cannot read the network configuration from stdin", e.message)));
  });
}
