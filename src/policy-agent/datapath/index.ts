// The policy datapath axis: one interface (types.ts), one folder per implementation, one case
// suite (cases.ts) that every implementation passes. The agent creates the datapath once, at the
// top (startPolicyEnforcement), and hands it to the controller; nothing below picks one.
import { NftDatapath, type NftDatapathOptions } from "./nft/datapath.js";
import type { PolicyDatapath } from "./types.js";

export type * from "./types.js";
export { NftDatapath, type NftDatapathOptions } from "./nft/datapath.js";

/** nft: one nftables table per node, changed by atomic `nft -f` transactions (eBPF is next). */
export const POLICY_DATAPATHS = ["nft"] as const;
export type PolicyDatapathName = (typeof POLICY_DATAPATHS)[number];

export function isPolicyDatapathName(s: string): s is PolicyDatapathName {
  return (POLICY_DATAPATHS as readonly string[]).includes(s);
}

export function createPolicyDatapath(name: PolicyDatapathName, o: NftDatapathOptions = {}): PolicyDatapath {
  switch (name) {
    case "nft":
      return new NftDatapath(o);
  }
}
