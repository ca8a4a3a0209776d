// `weft delete`: objects named in files, by kind and name, by selector or --all.
import { selectorMatches, type LabelSelector } from "../../k8s/index.js";
import { isStoreError, type ClusterStore } from "../../store/types.js";
import { UserError } from "../errors.js";
import { withStore, type StoreFlags } from "../store-flags.js";
import { DEFAULT_NAMESPACE } from "./apply.js";
import { resourceName, type KindInfo } from "./kinds.js";
import { readManifests } from "./manifest.js";
import { listNodeObjects } from "./nodes.js";
import { identify } from "./prepare.js";
import type { Printable } from "./print.js";
import { parseSelector } from "./selector.js";
import { checkNamespaceFlag, notFound, parseTargets, softError } from "./targets.js";

export interface DeleteFlags extends StoreFlags {
  filename: string[];
  namespace?: string;
  ignoreNotFound?: boolean;
  selector?: string;
  all?: boolean;
}

/** Deletes one object (a Namespace with its Pods and NetworkPolicies); false if it was not there. */
export async function deleteOne(
  store: ClusterStore,
  info: KindInfo,
  name: string,
  namespace: string,
): Promise<boolean> {
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

export async function runDelete(args: string[], o: DeleteFlags): Promise<void> {
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
    if (args.length === 0)
      throw new UserError("give -f FILE or KIND NAME: weft delete -f FILE | weft delete KIND NAME [-n NS]");
    const targets = parseTargets(args, "delete");
    const selector = o.selector !== undefined ? parseSelector(o.selector) : undefined;
    const bySelection = selector !== undefined || !!o.all;
    if (bySelection && targets.some((t) => t.names.length))
      throw new UserError("-l and --all go with a kind, not with names");
    if (!bySelection && targets.some((t) => t.names.length === 0))
      throw new UserError(`resource type given, but no name: weft delete ${args[0]} NAME (or -l SELECTOR, or --all)`);
    if (bySelection) {
      // Resolved inside the store session below: every object of the kinds (in the namespace) that matches.
      return withStore(
        o,
        async (store) => {
          for (const t of targets) {
            for (const r of await selectRefs(store, t.info, flagNs ?? DEFAULT_NAMESPACE, selector))
              await deleteAndReport(store, r, o);
          }
        },
        { mustExist: true },
      );
    }
    refs = targets.flatMap((t) =>
      t.names.map((name) => ({ info: t.info, name, namespace: flagNs ?? DEFAULT_NAMESPACE })),
    );
  }
  await withStore(
    o,
    async (store) => {
      for (const r of refs) await deleteAndReport(store, r, o);
    },
    { mustExist: true },
  );
}

export type Ref = { info: KindInfo; name: string; namespace: string };

export async function deleteAndReport(store: ClusterStore, r: Ref, o: DeleteFlags): Promise<void> {
  if (await deleteOne(store, r.info, r.name, r.namespace))
    process.stdout.write(`${resourceName(r.info)} "${r.name}" deleted\n`);
  else if (!o.ignoreNotFound) softError(notFound(r.info, r.name, r.namespace));
}

/** The objects of a kind (in a namespace, for namespaced kinds) that a selector matches (all without one). */
export async function selectRefs(
  store: ClusterStore,
  info: KindInfo,
  namespace: string,
  selector: LabelSelector | undefined,
): Promise<Ref[]> {
  const objs: Printable[] =
    info.kind === "Node"
      ? await listNodeObjects(store)
      : await store.objects.list(info.kind, info.namespaced ? { namespace } : {});
  return objs
    .filter((x) => !selector || selectorMatches(selector, x.metadata.labels))
    .filter((x) => !(info.kind === "Namespace" && x.metadata.name === DEFAULT_NAMESPACE))
    .map((x) => ({ info, name: x.metadata.name, namespace }));
}
