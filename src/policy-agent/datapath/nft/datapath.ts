// The nft datapath: the compiled model as `table inet weft` in the node's network namespace,
// rendered by policy/nft.ts and committed as one `nft -f` transaction each time (whole-table
// replacement with counters carried over, or an element diff).
import { nftApply, nftDeleteTable, nftListCountersJson, nftListTable } from "../../../kernel/nft.js";
import {
  parseCounters,
  renderElementUpdate,
  renderModelChange,
  renderRuleset,
  type CompiledModel,
  type ElementChange,
  type RenderOptions,
} from "../../../policy/index.js";
import type { CounterValue, DatapathUpdate, PolicyDatapath } from "../types.js";

export interface NftDatapathOptions {
  /** Network namespace of the table (e.g. /run/netns/node1); absent = this process' own. */
  netns?: string;
  /** nft table, NFLOG group, log rate, pod interface prefix (defaults: weft, 100, 10/s, wf). */
  render?: Pick<RenderOptions, "table" | "nflogGroup" | "logRatePerSecond" | "podIfPrefix">;
}

export class NftDatapath implements PolicyDatapath {
  readonly name = "nft";
  private readonly render: Omit<RenderOptions, "counterValues">;
  private readonly target: { netns?: string };

  constructor(o: NftDatapathOptions = {}) {
    this.render = { ...(o.render ?? {}) };
    this.target = o.netns === undefined ? {} : { netns: o.netns };
  }

  get table(): string {
    return this.render.table ?? "weft";
  }

  async load(model: CompiledModel): Promise<{ adopted: boolean }> {
    const json = await nftListCountersJson(this.table, this.target);
    const counterValues = json === null ? new Map<string, CounterValue>() : parseCounters(json);
    await nftApply(renderRuleset(model, { ...this.render, counterValues }), this.target);
    return { adopted: json !== null };
  }

  async update(prev: CompiledModel, next: CompiledModel, change?: ElementChange): Promise<DatapathUpdate | null> {
    const script =
      change === undefined
        ? renderElementUpdate(prev, next, this.render)
        : renderModelChange(prev, next, change, this.render);
    if (script === null) return null;
    if (script === "") return "none";
    await nftApply(script, this.target);
    return "elements";
  }

  async counters(): Promise<Map<string, CounterValue> | null> {
    const json = await nftListCountersJson(this.table, this.target);
    return json === null ? null : parseCounters(json);
  }

  async show(): Promise<string | null> {
    return nftListTable(this.table, this.target);
  }

  async remove(): Promise<boolean> {
    return nftDeleteTable(this.table, this.target);
  }
}
