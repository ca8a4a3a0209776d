// Typed nftables operations for weft's policy table: apply a script as one atomic transaction,
// read named counters, show or delete the table, and capture an NFLOG group (link views are in links.ts). Every call runs
// in the given network namespace (the caller's own when absent).
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable } from "node:stream";
import { KernelCommandError, run, runStatus } from "./exec.js";
import { InvalidKernelInput, netnsPath } from "./validate.js";

export interface NftTarget {
  /** Network namespace path (e.g. /run/netns/node1); absent = this process' namespace. */
  netns?: string;
}

/** An nft table name: a plain identifier (nft also forbids '-' and '/'). */
export function nftTableName(name: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,30}$/.test(name))
    throw new InvalidKernelInput(`nft table name "${name}" is not a plain identifier`);
  return name;
}

function target(t: NftTarget): { netns?: string } {
  return t.netns === undefined ? {} : { netns: netnsPath(t.netns) };
}

const NO_TABLE = /No such file or directory/;

/**
 * Applies an nft script with `nft -f -`: the kernel commits all of it or none of it, so there is
 * never a moment with half a change in force. Rejects with KernelCommandError (nft's own message).
 */
export async function nftApply(script: string, t: NftTarget = {}): Promise<void> {
  await run(["nft", "-f", "-"], { input: script, ...target(t) });
}

/**
 * `nft -j list counters table inet TABLE` as JSON text (parse it with the policy module's
 * parseCounters), or null when the table does not exist.
 */
export async function nftListCountersJson(table: string, t: NftTarget = {}): Promise<string | null> {
  const argv = ["nft", "-j", "list", "counters", "table", "inet", nftTableName(table)];
  const r = await runStatus(argv, target(t));
  if (r.code === 0) return r.stdout;
  if (NO_TABLE.test(r.stderr)) return null;
  throw new KernelCommandError(argv, r.code, r.stderr);
}

/** The table as nft prints it (`nft list table inet TABLE`), or null when it does not exist. */
export async function nftListTable(table: string, t: NftTarget = {}): Promise<string | null> {
  const argv = ["nft", "list", "table", "inet", nftTableName(table)];
  const r = await runStatus(argv, target(t));
  if (r.code === 0) return r.stdout;
  if (NO_TABLE.test(r.stderr)) return null;
  throw new KernelCommandError(argv, r.code, r.stderr);
}

/** Deletes `table inet TABLE` if present (nothing else); true when it existed. */
export async function nftDeleteTable(table: string, t: NftTarget = {}): Promise<boolean> {
  const name = nftTableName(table);
  const existed = (await nftListTable(name, t)) !== null;
  // "add table" first makes the delete succeed whether or not the table exists, in one transaction.
  await nftApply(`table inet ${name}\ndelete table inet ${name}\n`, t);
  return existed;
}

export type NflogCapture = ChildProcessByStdio<null, Readable, Readable>;

/**
 * Starts `tcpdump -i nflog:GROUP -w -` (packet-buffered pcap on stdout) in the namespace. The pcap
 * records carry the NFLOG TLVs (prefix, payload), which tcpdump's text output leaves out.
 * The caller owns the process (end it by its PID; setpriv and nsenter exec, so it is tcpdump's).
 *
 * The kernel kills it when the calling thread dies (also on SIGKILL of the agent): util-linux
 * setpriv sets PR_SET_PDEATHSIG before exec. Spawn from the main thread (Node does): the signal
 * follows the death of the parent *thread*. `-Z root` keeps tcpdump from switching to its own
 * user: any credential change clears PDEATHSIG. With `-w` tcpdump only copies packets, it does
 * not dissect them. (A parent killed between fork and setpriv's prctl still leaves it behind.)
 */
export function spawnNflogCapture(group: number, t: NftTarget = {}): NflogCapture {
  if (!Number.isInteger(group) || group < 0 || group > 65535)
    throw new InvalidKernelInput(`NFLOG group ${group} is not in 0..65535`);
  const argv = ["tcpdump", "-Z", "root", "-U", "-n", "-s", "256", "-i", `nflog:${group}`, "-w", "-"];
  const { netns } = target(t);
  const full = ["setpriv", "--pdeathsig", "KILL", "--", ...(netns ? ["nsenter", `--net=${netns}`, "--"] : []), ...argv];
  return spawn(full[0], full.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
}
