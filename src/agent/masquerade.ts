// The node's egress masquerade from the cluster settings (flannel's ipMasq): on, the masquerade
// table holds the cluster CIDRs; off, the table is removed. Either way one nft transaction, and
// nothing is written when the kernel already matches (an agent restart adopts the table as is).
import type { Logger } from "pino";
import { removeMasquerade, syncMasquerade } from "../kernel/masquerade.js";
import type { ClusterSettings } from "../store/types.js";

/** Brings the masquerade table in line with the settings; returns whether the kernel changed. */
export async function applyMasquerade(
  settings: Pick<ClusterSettings, "ipMasq" | "clusterCIDRs">,
  log: Logger,
  netns?: string,
): Promise<boolean> {
  const t = netns === undefined ? {} : { netns };
  if (settings.ipMasq) {
    const changed = await syncMasquerade({ clusterCIDRs: settings.clusterCIDRs }, t);
    log.info(
      { clusterCIDRs: settings.clusterCIDRs, changed },
      "egress masquerade on: pod traffic leaving the cluster CIDRs goes out with the node's address",
    );
    return changed;
  }
  const removed = await removeMasquerade(t);
  log.info({ removed }, "egress masquerade off (ipMasq false): pods keep their own source address everywhere");
  return removed;
}
