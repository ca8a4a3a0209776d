// `weft label`: add, change (--overwrite) or remove (key-) labels.
import { labelValue, qualifiedName } from "../../k8s/index.js";
import { ConflictError, type ClusterStore } from "../../store/types.js";
import { UserError } from "../errors.js";
import { withStore, type StoreFlags } from "../store-flags.js";
import { DEFAULT_NAMESPACE } from "./apply.js";
import { resourceName, resourcePlural, type KindInfo } from "./kinds.js";
import { checkNamespaceFlag, getOne, notFound, parseTargets, softError } from "./targets.js";

export interface LabelFlags extends StoreFlags {
  namespace?: string;
  overwrite?: boolean;
}

export type LabelOp = { key: string; value: string } | { key: string; remove: true };

export function parseLabelOp(arg: string): LabelOp | undefined {
  if (arg.endsWith("-") && !arg.includes("=")) {
    const key = arg.slice(0, -1);
    const errs = qualifiedName(key);
    if (errs.length) throw new UserError(`invalid label key "${key}": ${errs[0]}`);
    return { key, remove: true };
  }
  const i = arg.indexOf("=");
  if (i < 0) return undefined;
  const key = arg.slice(0, i),
    value = arg.slice(i + 1);
  const kerrs = qualifiedName(key);
  if (kerrs.length) throw new UserError(`invalid label key "${key}": ${kerrs[0]}`);
  const verrs = labelValue(value);
  if (verrs.length) throw new UserError(`invalid label value: "${arg}": ${verrs[0]}`);
  return { key, value };
}

export async function labelOne(
  store: ClusterStore,
  info: KindInfo,
  name: string,
  namespace: string,
  ops: readonly LabelOp[],
  overwrite: boolean,
): Promise<boolean | undefined> {
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
      const { action } = await store.objects.apply({
        ...cur,
        metadata: { ...meta, labels, resourceVersion: cur.metadata.resourceVersion },
      });
      return action !== "unchanged";
    } catch (e) {
      if (e instanceof ConflictError && (e.reason === "ResourceVersion" || e.reason === "Contention")) continue;
      throw e;
    }
  }
  throw new UserError(`${resourcePlural(info)} "${name}" kept changing while being labeled; retry`, 1);
}

export async function runLabel(args: string[], o: LabelFlags): Promise<void> {
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
  if (targets.length !== 1 || targets[0].names.length === 0)
    throw new UserError("give one kind and at least one name: weft label KIND NAME key=value ...");
  if (ops.length === 0) throw new UserError("at least one label update is required: key=value or key-");
  const { info, names } = targets[0];
  if (info.readOnly)
    throw new UserError(`${info.plural} come from the weft agents' node leases; their labels cannot be changed`);
  await withStore(
    o,
    async (store) => {
      for (const name of names) {
        const changed = await labelOne(store, info, name, ns, ops, !!o.overwrite);
        if (changed === undefined) softError(notFound(info, name, ns));
        else process.stdout.write(`${resourceName(info)}/${name} ${changed ? "labeled" : "not labeled"}\n`);
      }
    },
    { mustExist: true },
  );
}
