// What the object commands share: parsing KIND NAME / KIND/NAME arguments and --namespace, reading
// one object, and kubectl's "not found" and keep-going error lines.
import { dns1123Label } from "../../k8s/index.js";
import { isStoreError, type ClusterStore, type StoredObject } from "../../store/types.js";
import { UserError } from "../errors.js";
import { resolveKind, resourcePlural, type KindInfo } from "./kinds.js";

export const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function checkNamespaceFlag(ns: string | undefined): string | undefined {
  if (ns === undefined) return undefined;
  const errs = dns1123Label(ns);
  if (errs.length) throw new UserError(`--namespace "${ns}": ${errs[0]}`);
  return ns;
}

/** Writes an error line without ending the command (kubectl goes on with the other objects). */
export function softError(msg: string): void {
  process.stderr.write(`weft: ${msg}\n`);
  process.exitCode = 1;
}

export interface Target {
  info: KindInfo;
  names: string[];
}

/** "pods", "pods a b", "pods,netpol", "pod/a netpol/p" -> what to act on. */
export function parseTargets(args: readonly string[], verb: string): Target[] {
  if (args.length === 0)
    throw new UserError(
      `give the resource type: weft ${verb} KIND [NAME] (kinds: namespaces, pods, networkpolicies, nodes, bgpconfigurations, bgppeers)`,
    );
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
  if (names.length && kinds.length > 1)
    throw new UserError(`names go with one kind: weft ${verb} KIND NAME, or KIND/NAME ...`);
  return kinds.map((info) => ({ info, names: [...names] }));
}

export async function getOne(
  store: ClusterStore,
  info: KindInfo,
  name: string,
  namespace: string,
): Promise<StoredObject | undefined> {
  try {
    return await store.objects.get({ kind: info.kind, name, ...(info.namespaced ? { namespace } : {}) });
  } catch (e) {
    if (isStoreError(e, "NotFound")) return undefined;
    throw e;
  }
}

export const notFound = (info: KindInfo, name: string, namespace?: string): string =>
  `${resourcePlural(info)} "${name}" not found${info.namespaced && namespace ? ` in namespace "${namespace}"` : ""}`;
