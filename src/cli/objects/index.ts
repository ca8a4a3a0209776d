// kubectl-style object commands on any weft store: apply, delete, get, label.
//   weft apply -f FILE|DIR|- [-n NS]
//   weft delete -f FILE|DIR|- | KIND NAME... | KIND/NAME... [-n NS] [--ignore-not-found]
//   weft get KIND[,KIND] [NAME...] | KIND/NAME... [-n NS | -A] [-o json|yaml|wide|name] [--show-labels]
//   weft label KIND NAME... | KIND/NAME [-n NS] key=value ... key- ... [--overwrite]
// Kinds: Namespace, Pod, NetworkPolicy, BGPConfiguration, BGPPeer, and Node (read from the agents' node leases).
// One file per command (get.ts, delete.ts, label.ts; apply is here, applyAll in apply.ts); the
// shared argument parsing in targets.ts; kinds, manifests, printing and selectors beside them.
import type { Command } from "commander";
import { UserError } from "../errors.js";
import { addStoreOptions, withStore, type StoreFlags } from "../store-flags.js";
import { applyAll } from "./apply.js";
import { runDelete, type DeleteFlags } from "./delete.js";
import { runGet, type GetFlags } from "./get.js";
import { runLabel, type LabelFlags } from "./label.js";
import { readManifests } from "./manifest.js";
import { prepareObject } from "./prepare.js";
import { checkNamespaceFlag, collect } from "./targets.js";

export { parseLabelOp } from "./label.js";

interface ApplyFlags extends StoreFlags {
  filename: string[];
  namespace?: string;
}

async function runApply(o: ApplyFlags): Promise<void> {
  if (o.filename.length === 0)
    throw new UserError("give the objects with -f FILE (a file, a directory, or - for stdin)");
  const flagNs = checkNamespaceFlag(o.namespace);
  // Everything is read and validated before the store is even opened: a bad object writes nothing.
  const prepared = readManifests(o.filename).map((m) => prepareObject(m, flagNs));
  await withStore(o, (store) => applyAll(store, prepared, (line) => process.stdout.write(line + "\n")));
}

const KINDS_HELP =
  "KIND: namespaces (ns), pods (po), networkpolicies (netpol), nodes (no), bgpconfigurations (bgpconfig), bgppeers; singular, plural or short, any case";

export function registerObjects(program: Command): void {
  addStoreOptions(
    program
      .command("apply")
      .description(
        "create or replace Namespaces, Pods, NetworkPolicies, BGPConfiguration and BGPPeers from YAML or JSON (several documents, or a List); all are validated before any is written",
      )
      .option(
        "-f, --filename <file>",
        "file, directory (its .yaml/.yml/.json files) or - for stdin; repeatable",
        collect,
        [],
      )
      .option("-n, --namespace <ns>", "namespace for objects that name none (default: default)"),
  ).action((o: ApplyFlags) => runApply(o));

  addStoreOptions(
    program
      .command("delete")
      .description(
        "delete objects named in files, or by kind and name; deleting a Namespace deletes its Pods and NetworkPolicies",
      )
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
      .option(
        "-l, --selector <selector>",
        "only objects whose labels match: key=value, key!=value, key in (a,b), key notin (a,b), key, !key; comma = and",
      )
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
