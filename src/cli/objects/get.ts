// `weft get`: list or show objects as a table, JSON, YAML or names; -w watches.
import { selectorMatches, type LabelSelector } from "../../k8s/index.js";
import { maskBgpSecrets } from "../../store/bgp-objects.js";
import type { ClusterStore } from "../../store/types.js";
import { UserError } from "../errors.js";
import { withStore, type StoreFlags } from "../store-flags.js";
import { DEFAULT_NAMESPACE } from "./apply.js";
import type { KindInfo } from "./kinds.js";
import { endedNode, listNodeObjects, liveNode } from "./nodes.js";
import {
  columnWidths,
  formatRow,
  parseOutput,
  render,
  tableRows,
  type OutputFormat,
  type PrintOptions,
  type Printable,
} from "./print.js";
import { parseSelector } from "./selector.js";
import { checkNamespaceFlag, getOne, notFound, parseTargets, softError } from "./targets.js";

export interface GetFlags extends StoreFlags {
  namespace?: string;
  allNamespaces?: boolean;
  output?: string;
  showLabels?: boolean;
  selector?: string;
  watch?: boolean;
}

/** One object as `get -w` prints it after the first batch: a table row, a name, or a whole object. */
export function watchLine(
  info: KindInfo,
  obj: Printable,
  format: OutputFormat,
  opts: PrintOptions,
  widths: number[],
): string {
  if (format === "json") return JSON.stringify(obj, null, 4) + "\n";
  if (format === "yaml") return render(info, [obj], { ...opts, single: true }).replace(/^/, "---\n");
  if (format === "name") return render(info, [obj], opts);
  const row = tableRows(info, [obj], opts, false)[0];
  return formatRow(row, widths) + "\n";
}

/** `get -w`: the current objects, then one line (or object) per change until SIGINT/SIGTERM. */
export async function runWatch(
  store: ClusterStore,
  t: { info: KindInfo; names: string[] },
  format: OutputFormat,
  opts: PrintOptions,
  ns: string,
  selector: LabelSelector | undefined,
  allNs: boolean,
): Promise<void> {
  const wanted = (o: Printable): boolean =>
    (t.names.length === 0 || t.names.includes(o.metadata.name)) &&
    (!selector || selectorMatches(selector, o.metadata.labels));
  let widths: number[] = [];
  let live = false;
  const initial: Printable[] = [];
  const emit = (raw: Printable): void => {
    const o = maskBgpSecrets(raw); // a BGPPeer's password is never printed
    if (!wanted(o)) return;
    if (!live) initial.push(o);
    else process.stdout.write(watchLine(t.info, o, format, opts, widths));
  };
  let handle;
  if (t.info.kind === "Node") {
    initial.push(...(await listNodeObjects(store)).filter(wanted));
    handle = store.watchNodes((ev) => emit(ev.type === "removed" ? endedNode(ev.object) : liveNode(ev.object)), {
      replay: false,
    });
  } else {
    // List + watch in one (replay), so no change between the two is missed.
    handle = store.objects.watch(t.info.kind, (ev) => emit(ev.object), {
      replay: true,
      ...(t.info.namespaced && !allNs ? { namespace: ns } : {}),
    });
  }
  const stopped = new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  await handle.ready;
  if (format === "table" || format === "wide") {
    const rows = tableRows(t.info, initial, opts, true);
    widths = columnWidths(rows);
    process.stdout.write(rows.map((r) => formatRow(r, widths)).join("\n") + "\n");
  } else {
    for (const o of initial) process.stdout.write(watchLine(t.info, o, format, opts, widths));
  }
  live = true;
  await stopped;
  await handle.close();
}

export async function runGet(args: string[], o: GetFlags): Promise<void> {
  let format;
  try {
    format = parseOutput(o.output);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  if (o.namespace !== undefined && o.allNamespaces)
    throw new UserError("-n and -A exclude each other: give one namespace or all");
  const ns = checkNamespaceFlag(o.namespace) ?? DEFAULT_NAMESPACE;
  const targets = parseTargets(args, "get");
  const selector = o.selector !== undefined ? parseSelector(o.selector) : undefined;
  if (selector && targets.some((t) => t.names.length))
    throw new UserError("-l goes with a kind, not with names: weft get KIND -l SELECTOR");
  const single = targets.length === 1 && targets[0].names.length === 1;
  if (o.watch) {
    if (targets.length !== 1) throw new UserError("-w watches one kind: weft get KIND [NAME] -w");
    const opts = { format, allNamespaces: !!o.allNamespaces, showLabels: !!o.showLabels, single: false };
    return withStore(o, (store) => runWatch(store, targets[0], format, opts, ns, selector, !!o.allNamespaces), {
      mustExist: true,
    });
  }
  const results: Array<{ info: KindInfo; objs: Printable[] }> = [];
  await withStore(
    o,
    async (store) => {
      for (const t of targets) {
        let objs: Printable[];
        if (t.info.kind === "Node") {
          const all = await listNodeObjects(store);
          objs = t.names.length ? t.names.flatMap((n) => all.filter((x) => x.metadata.name === n)) : all;
          for (const n of t.names) if (!all.some((x) => x.metadata.name === n)) softError(notFound(t.info, n));
        } else if (t.names.length) {
          objs = [];
          for (const n of t.names) {
            const obj = await getOne(store, t.info, n, ns);
            if (obj) objs.push(obj);
            else softError(notFound(t.info, n, ns));
          }
        } else {
          objs = await store.objects.list(t.info.kind, t.info.namespaced && !o.allNamespaces ? { namespace: ns } : {});
        }
        results.push({
          info: t.info,
          // A BGPPeer's password is never printed (*** in every format).
          objs: (selector ? objs.filter((x) => selectorMatches(selector, x.metadata.labels)) : objs).map(
            maskBgpSecrets,
          ),
        });
      }
    },
    { mustExist: true },
  );

  const opts = { format, allNamespaces: !!o.allNamespaces, showLabels: !!o.showLabels, single };
  if (format === "json" || format === "yaml") {
    // One object asked for by name prints as itself, when found; everything else as one List.
    const all = results.flatMap((r) => r.objs);
    if (single && all.length === 0) return;
    process.stdout.write(render(results[0].info, all, opts));
    return;
  }
  const parts = results.filter((r) => r.objs.length).map((r) => render(r.info, r.objs, opts));
  if (parts.length) process.stdout.write(parts.join(format === "name" ? "" : "\n"));
  else if (targets.every((t) => t.names.length === 0)) {
    const scoped = targets.some((t) => t.info.namespaced) && !o.allNamespaces;
    process.stderr.write(scoped ? `No resources found in ${ns} namespace.\n` : "No resources found\n");
  }
}
