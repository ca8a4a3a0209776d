// What `weft uninstall` needs from the kernel: the namespace's links (with their kind) and nft
// tables, and deleting one of each. Names are validated before they reach ip or nft.
import { run } from "./exec.js";
import { ifname, InvalidKernelInput } from "./validate.js";
import { nftTableName } from "./nft.js";

export interface LinkInfo {
  name: string;
  /** rtnetlink's link kind (veth, vxlan, ...); "" for a device without one (lo, physical NICs). */
  kind: string;
}

export async function listLinks(): Promise<LinkInfo[]> {
  const out = JSON.parse(await run(["ip", "-j", "-d", "link", "show"])) as Array<{
    ifname: string;
    linkinfo?: { info_kind?: string };
  }>;
  return out.map((l) => ({ name: l.ifname, kind: l.linkinfo?.info_kind ?? "" }));
}

/** Deletes a link; one already gone (a veth whose peer went first) is not an error. */
export async function deleteLinkIfPresent(name: string): Promise<boolean> {
  try {
    await run(["ip", "link", "del", "dev", ifname(name)]);
    return true;
  } catch (e) {
    if ((await listLinks()).some((l) => l.name === name)) throw e;
    return false;
  }
}

export const NFT_FAMILIES = ["ip", "ip6", "inet", "arp", "bridge", "netdev"] as const;
export type NftFamily = (typeof NFT_FAMILIES)[number];

export interface NftTableRef {
  family: NftFamily;
  name: string;
}

export async function listNftTables(): Promise<NftTableRef[]> {
  const out = JSON.parse(await run(["nft", "-j", "list", "tables"])) as {
    nftables: Array<{ table?: { family: string; name: string } }>;
  };
  return out.nftables
    .flatMap((e) => (e.table ? [e.table] : []))
    .filter((t): t is NftTableRef => (NFT_FAMILIES as readonly string[]).includes(t.family))
    .map((t) => ({ family: t.family, name: t.name }));
}

export async function deleteNftTable(t: NftTableRef): Promise<void> {
  if (!(NFT_FAMILIES as readonly string[]).includes(t.family))
    throw new InvalidKernelInput(`nft family "${t.family}" is not one of ${NFT_FAMILIES.join(", ")}`);
  await run(["nft", "delete", "table", t.family, nftTableName(t.name)]);
}
