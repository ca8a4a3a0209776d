// weft's nodes as v1 Node objects: decoding (backend data and addresses in annotations, the pod
// CIDRs in spec.podCIDRs), writing a registration, and the live view (a Node is up while its Lease
// in kube-node-lease has not run out).
import {
  ConflictError,
  InvalidError,
  type NodeInfo,
  type NodeRegistration,
  type WatchEvent,
  type WatchHandle,
  type WatchListener,
  type WatchOptions,
} from "../types.js";
import { MAX_CAS_ATTEMPTS } from "../registration.js";
import { dnsSubdomain, stableStringify } from "../validate.js";
import { getOrUndefined, isApiError, type Json, type KubeClient } from "./client.js";
import { runInformer } from "./informer.js";
import {
  A_ADDRESSES,
  A_BACKEND,
  A_REGISTERED,
  A_TTL,
  NODE_LABEL,
  leaseExpiry,
  metaOf,
  nodeLeasePath,
  nodePath,
} from "./layout.js";

/** weft's view of a v1 Node; undefined for nodes weft did not register. */
export function decodeNode(node: Json): NodeInfo | undefined {
  const meta = metaOf(node);
  const ann = meta.annotations ?? {};
  if (ann[A_BACKEND] === undefined) return undefined;
  const spec = (node.spec ?? {}) as { podCIDR?: string; podCIDRs?: string[] };
  let backendData: Record<string, string> = {};
  let problem: string | undefined;
  try {
    const v = JSON.parse(ann[A_BACKEND]) as unknown;
    if (
      typeof v === "object" &&
      v !== null &&
      !Array.isArray(v) &&
      Object.values(v).every((x) => typeof x === "string")
    )
      backendData = v as Record<string, string>;
    else problem = `annotation ${A_BACKEND} of Node ${meta.name} is not a JSON object of strings`;
  } catch (e) {
    problem = `annotation ${A_BACKEND} of Node ${meta.name} is not valid JSON (${(e as Error).message})`;
  }
  // Hand-edited or damaged: say so rather than pass it off as a node that published nothing.
  if (problem) problem += `: restore it or restart the node's agent, which writes it again`;
  return {
    name: meta.name,
    addresses: (ann[A_ADDRESSES] ?? "").split(",").filter(Boolean),
    podCIDRs: spec.podCIDRs ?? (spec.podCIDR ? [spec.podCIDR] : []),
    backendData,
    registeredAt: ann[A_REGISTERED] ?? String((node.metadata as Json).creationTimestamp),
    leaseTTLSeconds: Number(ann[A_TTL] ?? 0),
    resourceVersion: meta.resourceVersion,
    ...(problem ? { problem } : {}),
  };
}

const sameInfo = (a: NodeInfo, b: NodeInfo): boolean =>
  stableStringify({ ...a, resourceVersion: "" }) === stableStringify({ ...b, resourceVersion: "" });
const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export async function upsertNode(
  client: KubeClient,
  r: NodeRegistration,
  podCIDRs: string[],
  ttl: number,
): Promise<Json> {
  const annotations = {
    [A_BACKEND]: JSON.stringify(r.backendData ?? {}),
    [A_ADDRESSES]: r.addresses.join(","),
    [A_REGISTERED]: new Date().toISOString(),
    [A_TTL]: String(ttl),
  };
  const internal = r.addresses.map((address) => ({ type: "InternalIP", address }));
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const cur = await getOrUndefined(client, nodePath(r.name));
    if (!cur) {
      try {
        return checkPodCIDRs(
          client,
          await client.request("POST", nodePath(), {
            body: {
              apiVersion: "v1",
              kind: "Node",
              metadata: {
                name: r.name,
                labels: { [NODE_LABEL]: "true", "kubernetes.io/hostname": r.name },
                annotations,
              },
              spec: { podCIDR: podCIDRs[0], podCIDRs },
              status: { addresses: [...internal, { type: "Hostname", address: r.name }] },
            },
          }),
          podCIDRs,
        );
      } catch (err) {
        if (isApiError(err, 409)) continue;
        throw err;
      }
    }
    const meta = cur.metadata as Json & { labels?: Record<string, string>; annotations?: Record<string, string> };
    const spec = (cur.spec ?? {}) as Json & { podCIDRs?: string[] };
    const have = spec.podCIDRs ?? [];
    if (have.length > 0 && stableStringify(have) !== stableStringify(podCIDRs)) {
      if (meta.labels?.[NODE_LABEL] !== "true") {
        throw new ConflictError(
          "AlreadyExists",
          `Node ${r.name} already has podCIDRs ${have.join(",")} that weft did not assign (kube-controller-manager --allocate-node-cidrs?): turn that off, or make weft's cluster CIDR the same and delete the Node`,
        );
      }
      // spec.podCIDRs cannot change once set: the Node is recreated with everything else kept.
      const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ct, managedFields: _mf, ...keep } = meta;
      try {
        await client.request("DELETE", nodePath(r.name), {
          body: { apiVersion: "v1", kind: "DeleteOptions", preconditions: { uid: meta.uid } },
        });
        await client.request("POST", nodePath(), {
          body: { ...cur, metadata: keep, spec: { ...spec, podCIDR: podCIDRs[0], podCIDRs } },
        });
      } catch (err) {
        if (!isApiError(err, 409) && !isApiError(err, 404)) throw err;
      }
      continue;
    }
    const next = {
      ...cur,
      metadata: {
        ...meta,
        labels: { ...(meta.labels ?? {}), [NODE_LABEL]: "true" },
        annotations: { ...(meta.annotations ?? {}), ...annotations },
      },
      spec: { ...spec, podCIDR: podCIDRs[0], podCIDRs },
    };
    let out: Json;
    try {
      out = await client.request("PUT", nodePath(r.name), { body: next });
    } catch (err) {
      if (isApiError(err, 409)) continue;
      throw err;
    }
    return await syncAddresses(client, checkPodCIDRs(client, out, podCIDRs), internal);
  }
  throw new ConflictError("Contention", `Node ${r.name} kept changing while weft registered it; retry`);
}

/** 1.20 without the IPv6DualStack feature gate keeps only the first of a Node's podCIDRs. */
function checkPodCIDRs(client: KubeClient, node: Json, podCIDRs: string[]): Json {
  const got = ((node.spec ?? {}) as { podCIDRs?: string[] }).podCIDRs ?? [];
  if (stableStringify(got) !== stableStringify(podCIDRs)) {
    throw new InvalidError(
      `${client.description} stored Node ${metaOf(node).name} with podCIDRs ${got.join(",") || "(none)"} instead of ${podCIDRs.join(",")}: ` +
        `for dual-stack nodes Kubernetes 1.20 needs kube-apiserver --feature-gates=IPv6DualStack=true; restart it with that flag (weft replaces the Node), or use one cluster CIDR`,
    );
  }
  return node;
}

/** status.addresses: weft's underlay addresses as the InternalIPs, other entries kept. */
export async function syncAddresses(
  client: KubeClient,
  node: Json,
  internal: Array<{ type: string; address: string }>,
): Promise<Json> {
  let cur = node;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const status = (cur.status ?? {}) as Json & { addresses?: Array<{ type: string; address: string }> };
    const have = status.addresses ?? [];
    const want = [...internal, ...have.filter((a) => a.type !== "InternalIP")];
    if (stableStringify(have.filter((a) => a.type === "InternalIP")) === stableStringify(internal)) return cur;
    try {
      return await client.request("PUT", `${nodePath(metaOf(cur).name)}/status`, {
        body: { ...cur, status: { ...status, addresses: want } },
      });
    } catch (err) {
      if (!isApiError(err, 409)) throw err;
      cur = await client.request("GET", nodePath(metaOf(cur).name));
    }
  }
  return cur;
}

/** A dead node whose subnet went to someone else must not keep showing it (kubectl get nodes). */
export async function retireDeadNode(client: KubeClient, name: string, cidr: string): Promise<void> {
  try {
    const node = await getOrUndefined(client, nodePath(name));
    if (!node || metaOf(node).labels?.[NODE_LABEL] !== "true") return;
    const info = decodeNode(node);
    if (!info?.podCIDRs.includes(cidr)) return;
    const lease = await getOrUndefined(client, nodeLeasePath(name));
    if (lease && leaseExpiry(lease) > Date.now()) return;
    await client.request("DELETE", nodePath(name), {
      body: {
        apiVersion: "v1",
        kind: "DeleteOptions",
        preconditions: { resourceVersion: metaOf(node).resourceVersion },
      },
    });
  } catch {
    // Best effort: the node is dead either way, and weft does not list dead nodes.
  }
}

export async function getLiveNode(client: KubeClient, name: string): Promise<NodeInfo | undefined> {
  dnsSubdomain("node name", name);
  const [node, lease] = await Promise.all([
    getOrUndefined(client, nodePath(name)),
    getOrUndefined(client, nodeLeasePath(name)),
  ]);
  if (!node || !lease || leaseExpiry(lease) <= Date.now()) return undefined;
  return decodeNode(node);
}

export async function listLiveNodes(client: KubeClient): Promise<NodeInfo[]> {
  const [nodes, leases] = await Promise.all([
    client.request<{ items?: Json[] }>("GET", nodePath(), { query: { labelSelector: `${NODE_LABEL}=true` } }),
    client.request<{ items?: Json[] }>("GET", nodeLeasePath()),
  ]);
  const expiry = new Map((leases.items ?? []).map((l) => [metaOf(l).name, leaseExpiry(l)]));
  const now = Date.now();
  return (nodes.items ?? [])
    .map(decodeNode)
    .filter((n): n is NodeInfo => n !== undefined && (expiry.get(n.name) ?? 0) > now)
    .sort(byName);
}

/** Nodes weft registered whose Lease is live: added when both exist, removed when the Lease runs out. */
export function watchLiveNodes(
  client: KubeClient,
  listener: WatchListener<NodeInfo>,
  options: WatchOptions = {},
): WatchHandle {
  const replay = options.replay ?? true;
  const nodes = new Map<string, NodeInfo>();
  const expiry = new Map<string, number>();
  const emitted = new Map<string, NodeInfo>();
  const timers = new Map<string, NodeJS.Timeout>();
  let live = false;
  let closed = false;
  const deliver = (ev: WatchEvent<NodeInfo>): void => {
    if (!replay && !live && ev.type === "added") return;
    listener(ev);
  };
  // A node is up while weft registered it and its Lease has not run out.
  const evaluate = (name: string): void => {
    if (closed) return;
    clearTimeout(timers.get(name));
    timers.delete(name);
    const info = nodes.get(name);
    const until = expiry.get(name) ?? 0;
    const prev = emitted.get(name);
    if (info && until > Date.now()) {
      emitted.set(name, info);
      if (!prev) deliver({ type: "added", object: info });
      else if (!sameInfo(prev, info)) deliver({ type: "updated", object: info, previous: prev });
      timers.set(
        name,
        setTimeout(() => evaluate(name), until - Date.now() + 5),
      );
    } else if (prev) {
      emitted.delete(name);
      deliver({ type: "removed", object: prev });
    }
  };
  const nodeInf = runInformer(
    client,
    nodePath(),
    {
      upsert: (o) => {
        const info = decodeNode(o);
        if (info) nodes.set(info.name, info);
        else nodes.delete(metaOf(o).name);
        evaluate(metaOf(o).name);
      },
      remove: (o) => {
        nodes.delete(metaOf(o).name);
        evaluate(metaOf(o).name);
      },
    },
    `${NODE_LABEL}=true`,
  );
  const leaseInf = runInformer(client, nodeLeasePath(), {
    upsert: (o) => {
      expiry.set(metaOf(o).name, leaseExpiry(o));
      evaluate(metaOf(o).name);
    },
    remove: (o) => {
      expiry.delete(metaOf(o).name);
      evaluate(metaOf(o).name);
    },
  });
  const ready = Promise.all([nodeInf.ready, leaseInf.ready]).then(() => {
    live = true;
  });
  return {
    ready,
    close: async () => {
      closed = true;
      for (const t of timers.values()) clearTimeout(t);
      await Promise.all([nodeInf.close(), leaseInf.close()]);
    },
  };
}
