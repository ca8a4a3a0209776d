// Egress masquerade (flannel's ipMasq): weft's own `table inet weft_nat`, a postrouting nat chain
// that SNATs to the outgoing interface's address every packet whose source is in the cluster
// CIDRs and whose destination is not (nor multicast). Pod-to-pod traffic, on one node or across
// nodes by any backend, stays in the cluster CIDRs and is never touched.
//
// Written as one `nft -f` transaction that deletes and re-creates the table: the old rules stay in
// force until the new ones are, so an agent restart adopts the table without a gap. The desired
// state is stamped into the table's comment, which makes an unchanged sync write nothing.
import { KernelCommandError, runStatus } from "./exec.js";
import { nftApply, nftTableName, type NftTarget } from "./nft.js";
import { InvalidKernelInput, netnsPath } from "./validate.js";
import { cidrOrNull, formatCidr } from "../net/cidr.js";

/** The table weft's masquerade lives in (family inet: one table for IPv4 and IPv6). */
export const MASQ_TABLE = "weft_nat";

export interface MasqueradeSpec {
  /** The cluster CIDRs (canonical, host bits clear), at most one per family. */
  clusterCIDRs: string[];
}

/** A cluster CIDR checked for nft: canonical network address, prefix in range. */
function clusterCidr(text: string): { family: 4 | 6; text: string } {
  const c = cidrOrNull(text);
  if (!c) throw new InvalidKernelInput(`cluster CIDR "${text}" is not a CIDR with its host bits clear`);
  // nft gets the parser's own rendering, never the input text.
  return { family: c.family, text: formatCidr(c) };
}

/** The nft script that makes the table what `spec` says (the whole table, replaced atomically). */
export function renderMasquerade(spec: MasqueradeSpec, table = MASQ_TABLE): string {
  const name = nftTableName(table);
  const cidrs = spec.clusterCIDRs.map(clusterCidr);
  if (cidrs.length === 0) throw new InvalidKernelInput("masquerade needs at least one cluster CIDR");
  const v4 = cidrs.filter((c) => c.family === 4).map((c) => c.text);
  const v6 = cidrs.filter((c) => c.family === 6).map((c) => c.text);
  if (v4.length > 1 || v6.length > 1) throw new InvalidKernelInput("at most one cluster CIDR per family");
  const rules: string[] = [];
  if (v4.length)
    rules.push(
      `    ip saddr ${v4[0]} ip daddr != { ${v4[0]}, 224.0.0.0/4 } masquerade fully-random comment "pods to outside the cluster"`,
    );
  if (v6.length)
    rules.push(
      `    ip6 saddr ${v6[0]} ip6 daddr != { ${v6[0]}, ff00::/8 } masquerade fully-random comment "pods to outside the cluster"`,
    );
  return [
    `table inet ${name}`,
    `delete table inet ${name}`,
    `table inet ${name} {`,
    `  comment "${stamp(spec)}"`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...rules,
    `  }`,
    `}`,
    "",
  ].join("\n");
}

/** What the table's comment records: the cluster CIDRs it was written for. */
function stamp(spec: MasqueradeSpec): string {
  return `weft masquerade ${spec.clusterCIDRs.map((c) => clusterCidr(c).text).join(",")}`;
}

function target(t: NftTarget): { netns?: string } {
  return t.netns === undefined ? {} : { netns: netnsPath(t.netns) };
}

const NO_TABLE = /No such file or directory/;

/** The table's body as nft lists it (or as the script writes it), one trimmed line each. */
function body(text: string, name: string): string[] {
  const lines = text.split("\n").map((l) => l.trim());
  const start = lines.indexOf(`table inet ${name} {`);
  if (start < 0) return [];
  const end = lines.lastIndexOf("}");
  return lines.slice(start + 1, end).filter(Boolean);
}

/**
 * Makes the masquerade table what `spec` says: nothing is written when the kernel already holds
 * exactly these rules (returns false); otherwise (absent, other CIDRs, drifted by hand) the whole
 * table is replaced in one transaction (returns true).
 */
export async function syncMasquerade(spec: MasqueradeSpec, t: NftTarget = {}, table = MASQ_TABLE): Promise<boolean> {
  const script = renderMasquerade(spec, table);
  const have = await listMasquerade(t, table);
  if (have !== null && body(have, table).join("\n") === body(script, table).join("\n")) return false;
  await nftApply(script, t);
  return true;
}

/** Removes the masquerade table if present (ipMasq off); true when it existed. */
export async function removeMasquerade(t: NftTarget = {}, table = MASQ_TABLE): Promise<boolean> {
  const name = nftTableName(table);
  if ((await listMasquerade(t, name)) === null) return false;
  // "add table" first makes the delete succeed even if the table went meanwhile, in one transaction.
  await nftApply(`table inet ${name}\ndelete table inet ${name}\n`, t);
  return true;
}

/** The table as nft prints it, or null when it does not exist (for `weft status` and tests). */
export async function listMasquerade(t: NftTarget = {}, table = MASQ_TABLE): Promise<string | null> {
  const argv = ["nft", "list", "table", "inet", nftTableName(table)];
  const r = await runStatus(argv, target(t));
  if (r.code === 0) return r.stdout;
  if (NO_TABLE.test(r.stderr)) return null;
  throw new KernelCommandError(argv, r.code, r.stderr);
}
