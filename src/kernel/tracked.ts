// A kernel context for callers that manage declarative state (the backends): the namespace to
// act in, and a hook that sees every command, split into reads and writes, so a caller can prove
// that a re-sync of unchanged state wrote nothing.
import { run } from "./exec.js";
import { netnsPath } from "./validate.js";

export type CommandKind = "read" | "write";

export interface KernelContext {
  /** Network namespace path to act in; the current namespace when absent. */
  readonly netns?: string;
  readonly onCommand?: (argv: readonly string[], kind: CommandKind) => void;
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
