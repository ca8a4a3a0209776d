// A kernel context for callers that manage declarative state (the backends): the namespace to
// act in, and a hook that sees every command, split into reads and writes, so a caller can prove
// that a re-sync of unchanged state wrote nothing.
import { KernelCommandError, run } from "./exec.js";
import type { PeerWriteChannel } from "./peer-writes.js";
import { netnsPath } from "./validate.js";

export type CommandKind = "read" | "write";

export interface KernelContext {
  /** Network namespace path to act in; the current namespace when absent. */
  readonly netns?: string;
  readonly onCommand?: (argv: readonly string[], kind: CommandKind) => void;
  /** How peer writes reach the kernel (peer-writes.ts), chosen by the agent; netlink when absent. */
  readonly peerWrites?: PeerWriteChannel;
}

function opts(ctx: KernelContext): { netns?: string } {
  return ctx.netns === undefined ? {} : { netns: netnsPath(ctx.netns) };
}

export function read(ctx: KernelContext, argv: readonly string[]): Promise<string> {
  ctx.onCommand?.(argv, "read");
  return run(argv, opts(ctx));
}

export async function write(ctx: KernelContext, argv: readonly string[]): Promise<void> {
  ctx.onCommand?.(argv, "write");
  await run(argv, opts(ctx));
}

/** Runs an `ip -j`/`bridge -j` listing; empty output (some versions print nothing) is []. */
export async function readJson<T>(ctx: KernelContext, argv: readonly string[]): Promise<T[]> {
  const out = (await read(ctx, argv)).trim();
  if (out === "") return [];
  const parsed: unknown = JSON.parse(out);
  return Array.isArray(parsed) ? (parsed as T[]) : [];
}

// Tokens that `ip -batch`/`bridge -batch` read back exactly as written (no quotes, '#', spaces).
const BATCH_SAFE = /^[A-Za-z0-9_.:/@%+-]+$/;

/**
 * Runs many `ip` (or `bridge`) commands as one `TOOL -force -batch -`: one process instead of one
 * per command. Every command is attempted; the result maps the index of each failed command to
 * the tool's message. Commands whose tokens the batch parser could misread run one by one.
 */
export async function writeBatch(
  ctx: KernelContext,
  tool: "ip" | "bridge",
  cmds: readonly (readonly string[])[],
): Promise<Map<number, string>> {
  const failed = new Map<number, string>();
  if (cmds.length === 0) return failed;
  for (const c of cmds)
    if (c[0] !== tool) throw new Error(`writeBatch(${tool}): command "${c.join(" ")}" is not a ${tool} command`);
  if (cmds.length === 1 || !cmds.every((c) => c.slice(1).every((t) => BATCH_SAFE.test(t)))) {
    for (const [i, c] of cmds.entries()) {
      try {
        await write(ctx, c);
      } catch (e) {
        failed.set(i, e instanceof KernelCommandError ? e.stderr.trim() : String(e));
      }
    }
    return failed;
  }
  const argv = [tool, "-force", "-batch", "-"];
  ctx.onCommand?.(argv, "write");
  try {
    await run(argv, { ...opts(ctx), input: cmds.map((c) => c.slice(1).join(" ")).join("\n") + "\n" });
  } catch (e) {
    if (!(e instanceof KernelCommandError)) throw e;
    // The tool prints each failure's message, then "Command failed -:LINE".
    let pending: string[] = [];
    for (const line of e.stderr.split("\n")) {
      const m = /^Command failed -:(\d+)$/.exec(line.trim());
      if (m) {
        failed.set(Number(m[1]) - 1, pending.join("; ") || "failed");
        pending = [];
      } else if (line.trim()) pending.push(line.trim());
    }
    if (failed.size === 0) cmds.forEach((_, i) => failed.set(i, e.stderr.trim() || e.message));
  }
  return failed;
}
