// weft's nodes as v1 Node objects: decoding (backend data, addresses and pod CIDRs in weft's
// annotations), writing weft's part of a registration (patches only: weft never deletes or
// re-creates a Node), the NetworkUnavailable condition, waiting for kube-controller-manager's
// podCIDRs, and the live view (a Node is up while weft's own Lease for it has not run out).
import {
  ConflictError,
  InvalidError,
  UnavailableError,
  type ClusterSettings,
  type NodeInfo,
  type NodeRegistration,
  type WatchEvent,
  type WatchHandle,
  type WatchListener,
  type WatchOptions,
} from "../types.js";
import { MAX_CAS_ATTEMPTS } from "../registration.js";
import { cidrContains } from "../../net/cidr.js";
import { dnsSubdomain, parseCidr, stableStringify } from "../validate.js";
import { getOrUndefined, isApiError, type Json, type KubeClient } from "./client.js";
import { runInformer } from "./informer.js";
import {
  A_ADDRESSES,
  A_BACKEND,
  A_CREATED,
  A_POD_CIDRS,
  A_REGISTERED,
  A_TTL,
  NETWORK_CONDITION,
  NETWORK_UP_REASON,
  NODE_LABEL,
  NODE_LEASE_LABEL,
  leaseExpiry,
  leaseNode,
  metaOf,
  nodeLeasePath,
  nodePath,
} from "./layout.js";

/** weft's view of a v1 Node; undefined for nodes weft did not register. */
export function decodeNode(node: Json): NodeInfo | undefined {
  const meta = metaOf(node);
  const ann = meta.annotations ?? {};
  if (ann[A_BACKEND] === undefined) return undefined;
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
    podCIDRs: ann[A_POD_CIDRS] !== undefined ? recordedCIDRs(node) : specCIDRs(node),
    backendData,
    registeredAt: ann[A_REGISTERED] ?? String((node.metadata as Json).creationTimestamp),
    leaseTTLSeconds: Number(ann[A_TTL] ?? 0),
    resourceVersion: meta.resourceVersion,
    // BGPPeer node selectors match these (the kubelet's, and the admin's such as rack=r1).
    ...(meta.labels && Object.keys(meta.labels).length ? { labels: { ...meta.labels } } : {}),
    ...(problem ? { problem } : {}),
  };
}

const sameInfo = (a: NodeInfo, b: NodeInfo): boolean =>
  stableStringify({ ...a, resourceVersion: "" }) === stableStringify({ ...b, resourceVersion: "" });
const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

const specCIDRs = (node: Json): string[] => {
  const spec = (node.spec ?? {}) as { podCIDR?: string; podCIDRs?: string[] };
  return spec.podCIDRs ?? (spec.podCIDR ? [spec.podCIDR] : []);
};
export { specCIDRs };

/** The same subnets, in any order (kube-controller-manager's order need not be weft's). */
export const sameCIDRs = (a: string[], b: string[]): boolean =>
  stableStringify([...a].sort()) === stableStringify([...b].sort());

/** The subnets weft recorded on a Node (annotation), or [] when it recorded none. */
export const recordedCIDRs = (node: Json): string[] =>
  (metaOf(node).annotations?.[A_POD_CIDRS] ?? "").split(",").filter(Boolean);

/**
 * A Node's podCIDRs in the order of the cluster CIDRs, each inside the cluster CIDR of its family;
 * InvalidError saying what to change otherwise (kube-controller-manager's --cluster-cidr must agree
 * with weft's settings).
 */
export function orderNodeCIDRs(name: string, podCIDRs: string[], settings: ClusterSettings, source: string): string[] {
  const clusters = settings.clusterCIDRs.map((c) => ({ text: c, cidr: parseCidr(c) }));
  const where = `(ConfigMap kube-system/weft-config, clusterCIDRs ${settings.clusterCIDRs.join(",")})`;
  const fix =
    source === "node"
      ? "run kube-controller-manager with --cluster-cidr equal to weft's clusterCIDRs, or change the ConfigMap"
      : "the cluster CIDRs changed under a registered node: restore them, or delete the Node so it is registered anew";
  for (const c of podCIDRs) {
    const p = parseCidr(c, false);
    if (!clusters.some((k) => k.cidr.family === p.family && cidrContains(k.cidr, p)))
      throw new InvalidError(
        `Node ${name} has spec.podCIDRs ${podCIDRs.join(",")}: ${c} is outside weft's cluster CIDRs ${where}: ${fix}`,
      );
  }
  return clusters.map((k) => {
    const mine = podCIDRs.filter((c) => parseCidr(c, false).family === k.cidr.family);
    if (mine.length !== 1)
      throw new InvalidError(
        `Node ${name} has ${mine.length === 0 ? "no" : "more than one"} IPv${k.cidr.family} podCIDR (spec.podCIDRs ${podCIDRs.join(",") || "empty"}) but weft's cluster CIDRs ${where} include ${k.text}: ` +
          (source === "node"
            ? `give kube-controller-manager one --cluster-cidr per family of weft's (dual-stack: --cluster-cidr=v4,v6 and --feature-gates=IPv6DualStack=true on 1.20), or make weft's clusterCIDRs match`
            : fix),
      );
    return mine[0];
  });
}

/** The registration's annotations (what weft owns on a Node). */
function ownAnnotations(r: NodeRegistration, podCIDRs: string[], ttl: number): Record<string, string> {
  return {
    [A_BACKEND]: JSON.stringify(r.backendData ?? {}),
    [A_ADDRESSES]: r.addresses.join(","),
    [A_POD_CIDRS]: podCIDRs.join(","),
    [A_REGISTERED]: new Date().toISOString(),
    [A_TTL]: String(ttl),
  };
}

const MERGE = "application/merge-patch+json";
const STRATEGIC = "application/strategic-merge-patch+json";

/**
 * Writes weft's part of Node r.name: creates the Node only when none exists and `create` is set (the
 * lab without a kubelet; then spec.podCIDRs and status.addresses are weft's), otherwise patches its
 * label and annotations, and spec.podCIDRs only while they are still empty. Never deletes a Node.
 */
export async function writeNode(
  client: KubeClient,
  r: NodeRegistration,
  podCIDRs: string[],
  ttl: number,
  create: boolean,
): Promise<Json> {
  const annotations = ownAnnotations(r, podCIDRs, ttl);
  const internal = r.addresses.map((address) => ({ type: "InternalIP", address }));
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const cur = await getOrUndefined(client, nodePath(r.name));
    if (!cur) {
      if (!create)
        throw new UnavailableError(`Node ${r.name} was deleted while weft registered it; registration is retried`);
      try {
        return checkPodCIDRs(
          client,
          await client.request("POST", nodePath(), {
            body: {
              apiVersion: "v1",
              kind: "Node",
              metadata: {
                name: r.name,
                // A label value holds at most 63 characters; a Node name up to 253.
                labels: { [NODE_LABEL]: "true", ...(r.name.length <= 63 ? { "kubernetes.io/hostname": r.name } : {}) },
                annotations: { ...annotations, [A_CREATED]: "true" },
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
    const have = specCIDRs(cur);
    if (have.length > 0 && !sameCIDRs(have, podCIDRs))
      throw new ConflictError(
        "AlreadyExists",
        `Node ${r.name} has spec.podCIDRs ${have.join(",")} (set by someone else, e.g. kube-controller-manager --allocate-node-cidrs) but weft would give it ${podCIDRs.join(",")}: set podCIDRSource "node" in the cluster settings (ConfigMap kube-system/weft-config) so weft uses the Node's podCIDRs`,
      );
    const patch: Json = {
      metadata: { resourceVersion: metaOf(cur).resourceVersion, labels: { [NODE_LABEL]: "true" }, annotations },
      ...(have.length === 0 ? { spec: { podCIDR: podCIDRs[0], podCIDRs } } : {}),
    };
    let out: Json;
    try {
      out = await client.request("PATCH", nodePath(r.name), { body: patch, contentType: MERGE });
    } catch (err) {
      if (isApiError(err, 409)) continue;
      throw err;
    }
    checkPodCIDRs(client, out, podCIDRs);
    return metaOf(out).annotations?.[A_CREATED] === "true" ? await syncAddresses(client, out, internal) : out;
  }
  throw new ConflictError("Contention", `Node ${r.name} kept changing while weft registered it; retry`);
}

/** 1.20 without the IPv6DualStack feature gate keeps only the first of a Node's podCIDRs. */
function checkPodCIDRs(client: KubeClient, node: Json, podCIDRs: string[]): Json {
  const got = specCIDRs(node);
  if (!sameCIDRs(got, podCIDRs)) {
    throw new InvalidError(
      `${client.description} stored Node ${metaOf(node).name} with podCIDRs ${got.join(",") || "(none)"} instead of ${podCIDRs.join(",")}: ` +
        `for dual-stack nodes Kubernetes 1.20 needs kube-apiserver --feature-gates=IPv6DualStack=true; restart it with that flag and delete the Node (spec.podCIDRs cannot change), or use one cluster CIDR`,
    );
  }
  return node;
}

/**
 * status.addresses of a Node weft created (no kubelet owns them): weft's underlay addresses as the
 * InternalIPs, other entries kept. Nodes a kubelet registered keep the kubelet's addresses.
 */
export async function syncAddresses(
  client: KubeClient,
  node: Json,
  internal: Array<{ type: string; address: string }>,
): Promise<Json> {
  if (metaOf(node).annotations?.[A_CREATED] !== "true") return node;
  const status = (node.status ?? {}) as Json & { addresses?: Array<{ type: string; address: string }> };
  const have = status.addresses ?? [];
  if (stableStringify(have.filter((a) => a.type === "InternalIP")) === stableStringify(internal)) return node;
  const want = [...internal, ...have.filter((a) => a.type !== "InternalIP")];
  // A merge patch replaces the whole list (a strategic one merges addresses by type, losing all but one).
  return client.request("PATCH", `${nodePath(metaOf(node).name)}/status`, {
    body: { status: { addresses: want } },
    contentType: MERGE,
  });
}

/** NetworkUnavailable=False (reason WeftIsUp) once the node's subnets are registered, as flannel does. */
export async function markNetworkUp(client: KubeClient, node: Json): Promise<Json> {
  const conditions = ((node.status ?? {}) as { conditions?: Array<{ type: string; status: string; reason?: string }> })
    .conditions;
  const cur = conditions?.find((c) => c.type === NETWORK_CONDITION);
  if (cur?.status === "False" && cur.reason === NETWORK_UP_REASON) return node;
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  return client.request("PATCH", `${nodePath(metaOf(node).name)}/status`, {
    contentType: STRATEGIC,
    body: {
      status: {
        conditions: [
          {
            type: NETWORK_CONDITION,
            status: "False",
            reason: NETWORK_UP_REASON,
            message: "weft is running on this node and its pod subnets are registered",
            lastTransitionTime: now,
            lastHeartbeatTime: now,
          },
        ],
      },
    },
  });
}

/**
 * podCIDRSource "node": the Node's spec.podCIDRs (set by kube-controller-manager), in cluster-CIDR
 * order. Waits (a watch on that one Node) up to timeoutMs for the Node and its podCIDRs to appear.
 */
export async function waitForNodeCIDRs(
  client: KubeClient,
  name: string,
  settings: ClusterSettings,
  timeoutMs: number,
  log: (line: string) => void,
): Promise<{ node: Json; podCIDRs: string[] }> {
  const check = (node: Json | undefined): { node: Json; podCIDRs: string[] } | undefined => {
    if (!node) return undefined;
    const have = specCIDRs(node);
    if (have.length === 0) return undefined;
    return { node, podCIDRs: orderNodeCIDRs(name, have, settings, "node") };
  };
  const first = check(await getOrUndefined(client, nodePath(name)));
  if (first) return first;
  log(
    `weft: waiting up to ${Math.round(timeoutMs / 1000)} s for Node ${name} to get spec.podCIDRs from kube-controller-manager (podCIDRSource "node")`,
  );
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (fn: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void inf.close();
      fn();
    };
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(
            new UnavailableError(
              `Node ${name} has no spec.podCIDRs after ${Math.round(timeoutMs / 1000)} s: run kube-controller-manager with --allocate-node-cidrs and --cluster-cidr (${settings.clusterCIDRs.join(",")}), or set podCIDRSource "weft" in the cluster settings (ConfigMap kube-system/weft-config) so weft assigns subnets itself`,
            ),
          ),
        ),
      timeoutMs,
    );
    const inf = runInformer(
      client,
      nodePath(),
      {
        upsert: (o) => {
          try {
            const got = check(o);
            if (got) finish(() => resolve(got));
          } catch (e) {
            finish(() => reject(e as Error));
          }
        },
        remove: () => undefined,
      },
      undefined,
      `metadata.name=${name}`,
    );
  });
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
    client.request<{ items?: Json[] }>("GET", nodeLeasePath(), {
      query: { labelSelector: `${NODE_LEASE_LABEL}=true` },
    }),
  ]);
  const expiry = new Map((leases.items ?? []).map((l) => [leaseNode(l) ?? "", leaseExpiry(l)]));
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
  const leaseInf = runInformer(
    client,
    nodeLeasePath(),
    {
      upsert: (o) => {
        const name = leaseNode(o);
        if (!name) return;
        expiry.set(name, leaseExpiry(o));
        evaluate(name);
      },
      remove: (o) => {
        const name = leaseNode(o);
        if (!name) return;
        expiry.delete(name);
        evaluate(name);
      },
    },
    `${NODE_LEASE_LABEL}=true`,
  );
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
