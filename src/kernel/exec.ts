// Runs kernel tools (ip, nft, nsenter, ...) as child processes with argument arrays, never
// through a shell. Every function in src/kernel builds on this one.
import { execFile, spawn } from "node:child_process";

/** A kernel tool that failed; `stderr` is what the tool said, for messages a person can act on. */
export class KernelCommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${argv.join(" ")}: ${stderr.trim() || `exit ${exitCode}`}`);
    this.name = "KernelCommandError";
  }
}

export interface RunOptions {
  /** Written to the tool's stdin (e.g. an `ip -batch -` or `nft -f -` script; any bytes). */
  input?: string | Buffer;
  /** Network namespace (a path such as /run/netns/x or /proc/PID/ns/net) to run the tool in. */
  netns?: string;
  timeoutMs?: number;
}

/** Runs argv[0] with the rest as arguments; resolves with stdout, rejects with KernelCommandError. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  if (argv.length === 0) throw new Error("run: empty argv");
  const full = opts.netns ? ["nsenter", `--net=${opts.netns}`, "--", ...argv] : [...argv];
  return new Promise((resolve, reject) => {
    const child = execFile(
      full[0],
      full.slice(1),
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err) {
          const code =
            typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === "number"
              ? (err as unknown as { code: number }).code
              : null;
          reject(new KernelCommandError(full, code, stderr || err.message));
        } else resolve(stdout);
      },
    );
    // A tool that exits without reading its stdin makes the write fail with EPIPE; its exit
    // status (handled above) is what matters, so the stream error is dropped.
    child.stdin?.on("error", () => undefined);
    // A tool that exits before reading its stdin must not crash us with EPIPE.
    child.stdin?.on("error", () => undefined);
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Like run() but inherits nothing and returns the exit code instead of throwing. */
export function runStatus(
  argv: readonly string[],
  opts: RunOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const full = opts.netns ? ["nsenter", `--net=${opts.netns}`, "--", ...argv] : [...argv];
  return new Promise((resolve) => {
    const child = spawn(full[0], full.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (e) => resolve({ code: 127, stdout, stderr: stderr + e.message }));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on("error", () => undefined); // EPIPE when the tool does not read stdin
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}
