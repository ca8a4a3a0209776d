// The PolicyDatapath case suite against the nft datapath (what only nft does, the table's text and
// sets, is tested with the renderer in policy/nft.kernel.test.ts and with the controller).
import { test } from "node:test";
import assert from "node:assert/strict";
import { policyDatapathCases } from "../cases.js";
import { NftDatapath } from "./datapath.js";
import { InvalidKernelInput } from "../../../kernel/validate.js";

policyDatapathCases("nft", (node) => new NftDatapath({ netns: node.path }));

test("nft: a table name that is not a plain identifier is refused before nft runs", async () => {
  const dp = new NftDatapath({
    netns: "/run/netns/weft-no-such-node",
    render: { table: "weft; flush ruleset" },
  });
  await assert.rejects(dp.show(), InvalidKernelInput);
  await assert.rejects(dp.remove(), InvalidKernelInput);
});
