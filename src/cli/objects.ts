// kubectl-style object commands on any weft store: apply, delete, get, label.
//   weft apply -f FILE|DIR|- [-n NS]
//   weft delete -f FILE|DIR|- | KIND NAME... | KIND/NAME... [-n NS] [--ignore-not-found]
//   weft get KIND[,KIND] [NAME...] | KIND/NAME... [-n NS | -A] [-o json|yaml|wide|name] [--show-labels]
//   weft label KIND NAME... | KIND/NAME [-n NS] key=value ... key- ... [--overwrite]
// Kinds: Namespace, Pod, NetworkPolicy, and Node (read from the agents' node leases).
import type { Command } from "commander";
import { dns1123Label, labelValue, qualifiedName, selectorMatches, type LabelSelector } from "../k8s/index.js";
import { ConflictError, isStoreError, type ClusterStore, type StoredObject } from "../store/types.js";
import { UserError } from "./errors.js";
import { addStoreOptions, withStore, type StoreFlags } from "./store-flags.js";
import { applyAll, DEFAULT_NAMESPACE } from "./objects/apply.js";
import { resolveKind, resourceName, resourcePlural, type KindInfo } from "./objects/kinds.js";
import { readManifests } from "./objects/manifest.js";
import { endedNode, listNodeObjects, liveNode } from "./objects/nodes.js";
import { identify, prepareObject } from "./objects/prepare.js";
import { columnWidths, formatRow, parseOutput, render, tableRows, type OutputFormat, type PrintOptions, type Printable } from "./objects/print.js";
import { parseSelector } from "./objects/selector.js";

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function checkNamespaceFlag(ns: string | undefined): string | undefined {
  if (ns === undefined) return undefined;
  const errs = dns1123Label(ns);
  if (errs.length) throw new UserError(`--namespace "${ns}": ${errs[0]}`);
  return ns;
}

/** Writes an error line without ending the command (kubectl goes on with the other objects). */
function softError(msg: string): void {
  process.stderr.write(`weft: ${msg}\n`);
  process.exitCode = 1;
}

interface Target {
  info: KindInfo;
  names: string[];
}

/** "pods", "pods a b", "pods,netpol", "pod/a netpol/p" -> what to act on. */
function parseTargets(args: readonly string[], verb: string): Target[] {
  if (args.length === 0) throw new UserError(`give the resource type: weft ${verb} KIND [NAME] (kinds: namespaces, pods, networkpolicies, nodes)`);
  if (args[0].includes("/")) {
    const targets: Target[] = [];
    for (const a of args) {
      const m = /^([^/]+)\/([^/]+)$/.exec(a);
      if (!m) throw new UserError(`"${a}": give KIND/NAME (all arguments in this form, or KIND NAME...)`);
      const info = resolveKind(m[1]);
      const t = targets.find((x) => x.info === info);
      if (t) t.names.push(m[2]);
      else targets.push({ info, names: [m[2]] });
    }
    return targets;
  }
  const kinds = args[0].split(",").filter(Boolean).map(resolveKind);
  const names = args.slice(1);
  if (names.length && kinds.length > 1) throw new UserError(`names go with one kind: weft ${verb} KIND NAME, or KIND/NAME ...`);
  return kinds.map((info) => ({ info, names: [...names] }));
}

async function getOne(store: ClusterStore, info: KindInfo, name: string, namespace: string): Promise<StoredObject | undefined> {
  try {
    return await store.objects.get({ kind: info.kind, name, ...(info.namespaced ? { namespace } : {}) });
  } catch (e) {
    if (isStoreError(e, "NotFound")) return undefined;
    throw e;
  }
}

const notFound = (info: KindInfo, name: string, namespace?: string): string =>
  `${resourcePlural(info)} "${name}" not found${info.namespaced && namespace ? ` in namespace "${namespace}"` : ""}`;

// ---- get ----------------------------------------------------------------------------------------

interface GetFlags extends StoreFlags {
  namespace?: string;
  allNamespaces?: boolean;
  output?: string;
  showLabels?: boolean;
  selector?: string;
  watch?: boolean;
}

/** One object as `get -w` prints it after the first batch: a table row, a name, or a whole object. */
function watchLine(info: KindInfo, obj: Printable, format: OutputFormat, opts: PrintOptions, widths: number[]): string {
  if (format === "json") return JSON.stringify(obj, null, 4) + "\n";
  if (format === "yaml") return render(info, [obj], { ...opts, single: true }).replace(/^/, "---\n");
  if (format === "name") return render(info, [obj], opts);
  const row = tableRows(info, [obj], opts, false)[0];
  return formatRow(row, widths) + "\n";
}

/** `get -w`: the current objects, then one line (or object) per change until SIGINT/SIGTERM. */
async function runWatch(store: ClusterStore, t: { info: KindInfo; names: string[] }, format: OutputFormat, opts: PrintOptions, ns: string, selector: LabelSelector | undefined, allNs: boolean): Promise<void> {
  const wanted = (o: Printable): boolean =>
    (t.names.length === 0 || t.names.includes(o.metadata.name)) && (!selector || selectorMatches(selector, o.metadata.labels));
  let widths: number[] = [];
  let live = false;
  const initial: Printable[] = [];
  const emit = (o: Printable): void => {
    if (!wanted(o)) return;
    if (!live) initial.push(o);
    else process.stdout.write(watchLine(t.info, o, format, opts, widths));
  };
  let handle;
  if (t.info.kind === "Node") {
    initial.push(...(await listNodeObjects(store)).filter(wanted));
    handle = store.watchNodes((ev) => emit(ev.type === "removed" ? endedNode(ev.object) : liveNode(ev.object)), { replay: false });
  } else {
    // List + watch in one (replay), so no change between the two is missed.
    handle = store.objects.watch(t.info.kind, (ev) => emit(ev.object), { replay: true, ...(t.info.namespaced && !allNs ? { namespace: ns } : {}) });
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

async function runGet(args: string[], o: GetFlags): Promise<void> {
  let format;
  try { format = parseOutput(o.output); } catch (e) { throw new UserError((e as Error).message); }
  if (o.namespace !== undefined && o.allNamespaces) throw new UserError("-n and -A exclude each other: give one namespace or all");
  const ns = checkNamespaceFlag(o.namespace) ?? DEFAULT_NAMESPACE;
  const targets = parseTargets(args, "get");
  const selector = o.selector !== undefined ? parseSelector(o.selector) : undefined;
  if (selector && targets.some((t) => t.names.length)) throw new UserError("-l goes with a kind, not with names: weft get KIND -l SELECTOR");
  const single = targets.length === 1 && targets[0].names.length === 1;
  if (o.watch) {
    if (targets.length !== 1) throw new UserError("-w watches one kind: weft get KIND [NAME] -w");
    const opts = { format, allNamespaces: !!o.allNamespaces, showLabels: !!o.showLabels, single: false };
    return withStore(o, (store) => runWatch(store, targets[0], format, opts, ns, selector, !!o.allNamespaces), { mustExist: true });
  }
  const results: Array<{ info: KindInfo; objs: Printable[] }> = [];
  await withStore(o, async (store) => {
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
      results.push({ info: t.info, objs: selector ? objs.filter((x) => selectorMatches(selector, x.metadata.labels)) : objs });
    }
  }, { mustExist: true });

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

// ---- delete -------------------------------------------------------------------------------------

interface DeleteFlags extends StoreFlags {
  filename: string[];
  namespace?: string;
  ignoreNotFound?: boolean;
  selector?: string;
  all?: boolean;
}

/** Deletes one object (a Namespace with its Pods and NetworkPolicies); false if it was not there. */
async function deleteOne(store: ClusterStore, info: KindInfo, name: string, namespace: string): Promise<boolean> {
  if (info.kind === "Node") {
    if (!(await listNodeObjects(store)).some((n) => n.metadata.name === name)) return false;
    await store.removeNode(name);
    return true;
  }
  if (info.kind === "Namespace" && name === DEFAULT_NAMESPACE) {
    throw new UserError(`namespaces "${DEFAULT_NAMESPACE}" is forbidden: this namespace may not be deleted`, 1);
  }
  try {
    await store.objects.delete({ kind: info.kind, name, ...(info.namespaced ? { namespace } : {}) });
  } catch (e) {
    if (isStoreError(e, "NotFound")) return false;
    throw e;
  }
  if (info.kind === "Namespace") {
    // The namespace is gone first, so nothing new lands in it; then what it held goes with it.
    for (const kind of ["Pod", "NetworkPolicy"]) {
      for (const obj of await store.objects.list(kind, { namespace: name })) {
        await store.objects.delete({ kind, name: obj.metadata.name, namespace: name }).catch((e: unknown) => {
          if (!isStoreError(e, "NotFound")) throw e;
        });
      }
    }
  }
  return true;
}

async function runDelete(args: string[], o: DeleteFlags): Promise<void> {
  const flagNs = checkNamespaceFlag(o.namespace);
  let refs: Ref[];
  if (o.filename.length) {
    if (args.length) throw new UserError("give either -f FILE or KIND NAME, not both");
    const all = readManifests(o.filename).map((m) => {
      const id = identify(m, flagNs);
      return { info: id.info, name: id.name, namespace: id.namespace ?? "" };
    });
    // Namespaces last: deleting one first would take the file's other objects with it, and
    // reporting those as "not found" would be wrong.
    refs = [...all.filter((r) => r.info.kind !== "Namespace"), ...all.filter((r) => r.info.kind === "Namespace")];
  } else {
    if (args.length === 0) throw new UserError("give -f FILE or KIND NAME: weft delete -f FILE | weft delete KIND NAME [-n NS]");
    const targets = parseTargets(args, "delete");
    const selector = o.selector !== undefined ? parseSelector(o.selector) : undefined;
    const bySelection = selector !== undefined || !!o.all;
    if (bySelection && targets.some((t) => t.names.length)) throw new UserError("-l and --all go with a kind, not with names");
    if (!bySelection && targets.some((t) => t.names.length === 0)) throw new UserError(`resource type given, but no name: weft delete ${args[0]} NAME (or -l SELECTOR, or --all)`);
    if (bySelection) {
      // Resolved inside the store session below: every object of the kinds (in the namespace) that matches.
      return withStore(o, async (store) => {
        for (const t of targets) {
          for (const r of await selectRefs(store, t.info, flagNs ?? DEFAULT_NAMESPACE, selector)) await deleteAndReport(store, r, o);
        }
      }, { mustExist: true });
    }
    refs = targets.flatMap((t) => t.names.map((name) => ({ info: t.info, name, namespace: flagNs ?? DEFAULT_NAMESPACE })));
  }
  await withStore(o, async (store) => {
    for (const r of refs) await deleteAndReport(store, r, o);
  }, { mustExist: true });
}

type Ref = { info: KindInfo; name: string; namespace: string };

async function deleteAndReport(store: ClusterStore, r: Ref, o: DeleteFlags): Promise<void> {
  if (await deleteOne(store, r.info, r.name, r.namespace)) process.stdout.write(`${resourceName(r.info)} "${r.name}" deleted\n`);
  else if (!o.ignoreNotFound) softError(notFound(r.info, r.name, r.namespace));
}

/** The objects of a kind (in a namespace, for namespaced kinds) that a selector matches (all without one). */
async function selectRefs(store: ClusterStore, info: KindInfo, namespace: string, selector: LabelSelector | undefined): Promise<Ref[]> {
  const objs: Printable[] = info.kind === "Node" ? await listNodeObjects(store) : await store.objects.list(info.kind, info.namespaced ? { namespace } : {});
  return objs
    .filter((x) => !selector || selectorMatches(selector, x.metadata.labels))
    .filter((x) => !(info.kind === "Namespace" && x.metadata.name === DEFAULT_NAMESPACE))
    .map((x) => ({ info, name: x.metadata.name, namespace }));
}

// ---- label --------------------------------------------------------------------------------------

interface LabelFlags extends StoreFlags {
  namespace?: string;
  overwrite?: boolean;
}

type LabelOp = { key: string; value: string } | { key: string; remove: true };

export function parseLabelOp(arg: string): LabelOp | undefined {
  if (arg.endsWith("-") && !arg.includes("=")) {
    const key = arg.slice(0, -1);
    const errs = qualifiedName(key);
    if (errs.length) throw new UserError(`invalid label key "${key}": ${errs[0]}`);
    return { key, remove: true };
  }
  const i = arg.indexOf("=");
  if (i < 0) return undefined;
  const key = arg.slice(0, i), value = arg.slice(i + 1);
  const kerrs = qualifiedName(key);
  if (kerrs.length) throw new UserError(`invalid label key "${key}": ${kerrs[0]}`);
  const verrs = labelValue(value);
  if (verrs.length) throw new UserError(`invalid label value: "${arg}": ${verrs[0]}`);
  return { key, value };
}

async function labelOne(store: ClusterStore, info: KindInfo, name: string, namespace: string, ops: readonly LabelOp[], overwrite: boolean): Promise<boolean | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await getOne(store, info, name, namespace);
    if (!cur) return undefined;
    const labels = { ...(cur.metadata.labels ?? {}) };
    for (const op of ops) {
      if ("remove" in op) {
        if (!(op.key in labels)) process.stderr.write(`label "${op.key}" not found.\n`);
        delete labels[op.key];
      } else {
        if (op.key in labels && labels[op.key] !== op.value && !overwrite) {
          throw new UserError(`'${op.key}' already has a value (${labels[op.key]}), and --overwrite is false`, 1);
        }
        labels[op.key] = op.value;
      }
    }
    const { uid: _u, creationTimestamp: _c, ...meta } = cur.metadata;
    try {
      // Same spec, same status: for a Pod this is the in-place update (same uid, same address).
      const { action } = await store.objects.apply({ ...cur, metadata: { ...meta, labels, resourceVersion: cur.metadata.resourceVersion } });
      return action !== "unchanged";
    } catch (e) {
      if (e instanceof ConflictError && (e.reason === "ResourceVersion" || e.reason === "Contention")) continue;
      throw e;
    }
  }
  throw new UserError(`${resourcePlural(info)} "${name}" kept changing while being labeled; retry`, 1);
}

async function runLabel(args: string[], o: LabelFlags): Promise<void> {
  const ns = checkNamespaceFlag(o.namespace) ?? DEFAULT_NAMESPACE;
  const ops: LabelOp[] = [];
  const rest: string[] = [];
  for (const a of args) {
    const op = rest.length === 0 ? undefined : parseLabelOp(a);
    if (op) ops.push(op);
    else if (ops.length) throw new UserError(`"${a}": labels are key=value or key-, and come after the names`);
    else rest.push(a);
  }
  const targets = parseTargets(rest, "label");
  if (targets.length !== 1 || targets[0].names.length === 0) throw new UserError("give one kind and at least one name: weft label KIND NAME key=value ...");
  if (ops.length === 0) throw new UserError("at least one label update is required: key=value or key-");
  const { info, names } = targets[0];
  if (info.readOnly) throw new UserError(`${info.plural} come from the weft agents' node leases; their labels cannot be changed`);
  await withStore(o, async (store) => {
    for (const name of names) {
      const changed = await labelOne(store, info, name, ns, ops, !!o.overwrite);
      if (changed === undefined) softError(notFound(info, name, ns));
      else process.stdout.write(`${resourceName(info)}/${name} ${changed ? "labeled" : "not labeled"}\n`);
    }
  }, { mustExist: true });
}

// ---- apply --------------------------------------------------------------------------------------

interface ApplyFlags extends StoreFlags {
  filename: string[];
  namespace?: string;
}

async function runApply(o: ApplyFlags): Promise<void> {
  if (o.filename.length === 0) throw new UserError("give the objects with -f FILE (a file, a directory, or - for stdin)");
  const flagNs = checkNamespaceFlag(o.namespace);
  // Everything is read and validated before the store is even opened: a bad object writes nothing.
  const prepared = readManifests(o.filename).map((m) => prepareObject(m, flagNs));
  await withStore(o, (store) => applyAll(store, prepared, (line) => process.stdout.write(line + "\n")));
}

// ---- registration -------------------------------------------------------------------------------

const KINDS_HELP = "KIND: namespaces (ns), pods (po), networkpolicies (netpol), nodes (no); singular, plural or short, any case";

export function registerObjects(program: Command): void {
  addStoreOptions(
    program
      .command("apply")
      .description("create or replace Namespaces, Pods and NetworkPolicies from YAML or JSON (several documents, or a List); all are validated before any is written")
      .option("-f, --filename <file>", "file, directory (its .yaml/.yml/.json files) or - for stdin; repeatable", collect, [])
      .option("-n, --namespace <ns>", "namespace for objects that name none (default: default)"),
  ).action((o: ApplyFlags) => runApply(o));

  addStoreOptions(
    program
      .command("delete")
      .description("delete objects named in files, or by kind and name; deleting a Namespace deletes its Pods and NetworkPolicies")
      .argument("[kind-and-names...]", `KIND NAME... or KIND/NAME... (${KINDS_HELP})`)
      .option("-f, --filename <file>", "file, directory or - for stdin; repeatable", collect, [])
      .option("-n, --namespace <ns>", "namespace (default: default)")
      .option("--ignore-not-found", "objects that do not exist are not an error")
      .option("-l, --selector <selector>", "delete the objects of KIND whose labels match, e.g. app=web,tier!=db")
      .option("--all", "delete every object of KIND (in the namespace)"),
  ).action((args: string[], o: DeleteFlags) => runDelete(args, o));

  addStoreOptions(
    program
      .command("get")
      .description("list or show objects, as a table (kubectl's columns), JSON or YAML")
      .argument("<kind-and-names...>", `KIND[,KIND] [NAME...] or KIND/NAME... (${KINDS_HELP})`)
      .option("-n, --namespace <ns>", "namespace (default: default)")
      .option("-A, --all-namespaces", "objects of every namespace (adds a NAMESPACE column)")
      .option("-o, --output <format>", "json, yaml, wide or name (default: a table)")
      .option("-l, --selector <selector>", "only objects whose labels match: key=value, key!=value, key in (a,b), key notin (a,b), key, !key; comma = and")
      .option("--show-labels", "add a LABELS column to the table")
      .option("-w, --watch", "after the current objects, print each change until interrupted"),
  ).action((args: string[], o: GetFlags) => runGet(args, o));

  addStoreOptions(
    program
      .command("label")
      .description("add, change (with --overwrite) or remove (key-) labels of objects")
      .argument("<args...>", `KIND NAME... key=value... key-... (${KINDS_HELP})`)
      .option("-n, --namespace <ns>", "namespace (default: default)")
      .option("--overwrite", "allow changing the value of a label that is already set"),
  ).action((args: string[], o: LabelFlags) => runLabel(args, o));
}
