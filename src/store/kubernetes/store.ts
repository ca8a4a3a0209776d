// ClusterStore over a real kube-apiserver (see layout.ts for where things live). Nodes are v1 Node
// objects that weft's agent registers (spec.podCIDRs, backend data in annotations); liveness is a
// coordination.k8s.io Lease in kube-node-lease that the agent renews; subnets are claimed with
// create-only / resourceVersion-checked Lease objects; settings are a create-only ConfigMap.
import { formatCidr, parseCidr, pickFreeSubnet, subnetCount, subnetIndex } from "../cidr.js";
import {
  ConflictError,
  ExhaustedError,
  InvalidError,
  NotFoundError,
  NotInitializedError,
  UnavailableError,
  type ClusterSettings,
  type ClusterSettingsInput,
  type ClusterStore,
  type NodeInfo,
  type NodeLease,
  type NodeRegistration,
  type ObjectStore,
  type RegisterOptions,
  type SubnetClaim,
  type WatchEvent,
  type WatchHandle,
  type WatchListener,
  type WatchOptions,
} from "../types.js";
import { dnsSubdomain, normalizeRegistration, normalizeSettings, stableStringify, wholeSeconds } from "../validate.js";
import { RecoveringLease } from "../recovering-lease.js";
import { isApiError, microTime, type Json, type KubeClient } from "./client.js";
import { runInformer } from "./informer.js";
import {
  A_ADDRESSES, A_BACKEND, A_CIDR, A_CLAIMED_AT, A_REGISTERED, A_TTL, CLAIM_LABEL, CLAIM_NAMESPACE, NODE_LABEL,
  NODE_LEASE_NAMESPACE, SETTINGS_KEY, SETTINGS_NAME, SETTINGS_NAMESPACE, claimName, claimPath, leaseExpiry, metaOf,
  nodeLeasePath, nodePath, settingsPath,
} from "./layout.js";
import { KubeObjectStore } from "./objects.js";

export const DEFAULT_TTL_SECONDS = 15;
export const DEFAULT_SUBNET_GRACE_SECONDS = 300;
const MAX_CAS_ATTEMPTS = 64;

/** A node Lease or subnet claim that weft renews: its name and the resourceVersion last written. */
interface Held {
  path: string;
  obj: Json;
}

/** Thrown by a renewal that finds the lease or a claim gone or taken: the registration is lost. */
class LostError extends Error {}

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
    if (typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === "string")) backendData = v as Record<string, string>;
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

const sameInfo = (a: NodeInfo, b: NodeInfo): boolean => stableStringify({ ...a, resourceVersion: "" }) === stableStringify({ ...b, resourceVersion: "" });
const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function decodeClaim(l: Json): (SubnetClaim & { expires: number; name: string }) | undefined {
  const meta = metaOf(l);
  const cidr = meta.annotations?.[A_CIDR];
  const holder = (l.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
  if (!cidr || !holder) return undefined;
  return { cidr, node: holder, claimedAt: meta.annotations?.[A_CLAIMED_AT] ?? "", expires: leaseExpiry(l), name: meta.name };
}

function leaseBody(name: string, namespace: string, holder: string, seconds: number, extra: { labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: Json[] } = {}): Json {
  const now = microTime();
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name, namespace, ...extra },
    spec: { holderIdentity: holder, leaseDurationSeconds: seconds, acquireTime: now, renewTime: now },
  };
}

export class KubernetesStore implements ClusterStore {
  readonly description: string;
  readonly objects: ObjectStore;
  private readonly leases = new Set<KubeNodeLease>();
  private readonly watches = new Set<WatchHandle>();

  constructor(readonly client: KubeClient) {
    this.description = client.description;
    this.objects = new KubeObjectStore(client, (w) => this.track(w));
  }

  private async getOrUndefined(path: string): Promise<Json | undefined> {
    try {
      return await this.client.request("GET", path);
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw err;
    }
  }

  async initCluster(input: ClusterSettingsInput): Promise<{ settings: ClusterSettings; created: boolean }> {
    const settings = normalizeSettings(input);
    try {
      await this.client.request("POST", settingsPath(), {
        body: {
          apiVersion: "v1", kind: "ConfigMap",
          metadata: { name: SETTINGS_NAME, namespace: SETTINGS_NAMESPACE, labels: { "app.kubernetes.io/managed-by": "weft" } },
          data: { [SETTINGS_KEY]: JSON.stringify(settings) },
        },
      });
      return { settings, created: true };
    } catch (err) {
      if (!isApiError(err, 409)) throw err;
    }
    const existing = await this.getClusterSettings();
    if (existing && stableStringify(existing) === stableStringify(settings)) return { settings: existing, created: false };
    throw new ConflictError(
      "AlreadyInitialized",
      `the cluster in ${this.description} is already initialized with cluster CIDRs ${existing?.clusterCIDRs.join(",")}, backend ${existing?.backend}` +
        `${existing?.mtu ? `, MTU ${existing.mtu}` : ""}, node subnets /${existing?.nodeSubnetPrefix.v4} (IPv4) and /${existing?.nodeSubnetPrefix.v6} (IPv6) ` +
        `(ConfigMap ${SETTINGS_NAMESPACE}/${SETTINGS_NAME}); settings cannot change under running nodes: re-run with the same settings, or start over with a new cluster`,
    );
  }

  async getClusterSettings(): Promise<ClusterSettings | undefined> {
    const cm = await this.getOrUndefined(settingsPath(SETTINGS_NAME));
    const text = (cm?.data as Record<string, string> | undefined)?.[SETTINGS_KEY];
    if (!cm) return undefined;
    if (!text) throw new InvalidError(`ConfigMap ${SETTINGS_NAMESPACE}/${SETTINGS_NAME} in ${this.description} has no ${SETTINGS_KEY}: it was not written by weft; delete it and run \`weft cluster init\` again`);
    try {
      return JSON.parse(text) as ClusterSettings;
    } catch {
      throw new InvalidError(`ConfigMap ${SETTINGS_NAMESPACE}/${SETTINGS_NAME} in ${this.description} holds no valid JSON in ${SETTINGS_KEY}: restore it, or delete it and run \`weft cluster init\` again`);
    }
  }

  async registerNode(reg: NodeRegistration, options: RegisterOptions = {}): Promise<NodeLease> {
    const r = normalizeRegistration(reg);
    const ttl = wholeSeconds("lease TTL", options.ttlSeconds ?? DEFAULT_TTL_SECONDS);
    const grace = wholeSeconds("subnet grace period", options.subnetGraceSeconds ?? DEFAULT_SUBNET_GRACE_SECONDS);
    const lease = new KubeNodeLease(this, r, ttl, grace);
    await lease.establish();
    this.leases.add(lease);
    return lease;
  }

  /** One registration round: subnet claims (own ones first), the Node, then its Lease. */
  async registerOnce(r: NodeRegistration, ttl: number, grace: number): Promise<{ node: NodeInfo; held: Held[] }> {
    const settings = await this.getClusterSettings();
    if (!settings) throw new NotInitializedError(this.description);
    const held: Held[] = [];
    const podCIDRs: string[] = [];
    for (const c of settings.clusterCIDRs) {
      const cluster = parseCidr(c);
      const prefix = cluster.family === 4 ? settings.nodeSubnetPrefix.v4 : settings.nodeSubnetPrefix.v6;
      const claim = await this.claimSubnet(r.name, c, prefix, ttl + grace);
      podCIDRs.push(claim.cidr);
      held.push(claim.held);
    }
    const node = await this.upsertNode(r, podCIDRs, ttl);
    const lease = await this.upsertNodeLease(r.name, ttl, metaOf(node).uid);
    held.unshift(lease);
    return { node: decodeNode(node)!, held };
  }

  private async listClaims(): Promise<Array<{ obj: Json; claim: SubnetClaim & { expires: number; name: string } }>> {
    const res = await this.client.request<{ items?: Json[] }>("GET", claimPath(), { query: { labelSelector: `${CLAIM_LABEL}=true` } });
    const out: Array<{ obj: Json; claim: SubnetClaim & { expires: number; name: string } }> = [];
    for (const obj of res.items ?? []) {
      const claim = decodeClaim(obj);
      if (claim) out.push({ obj: { ...obj, apiVersion: "coordination.k8s.io/v1", kind: "Lease" }, claim });
    }
    return out;
  }

  private async claimSubnet(node: string, clusterText: string, prefix: number, seconds: number): Promise<{ cidr: string; held: Held }> {
    const cluster = parseCidr(clusterText);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const claims = await this.listClaims();
      const now = Date.now();
      // A restarted agent gets its own subnet back as long as nobody took it over.
      const own = claims.find(({ claim }) => claim.node === node && subnetIndex(cluster, prefix, parseCidr(claim.cidr)) !== undefined);
      const takeOver = async (cur: Json, fresh: boolean): Promise<Held | undefined> => {
        const spec: Json = { ...(cur.spec as Json), holderIdentity: node, leaseDurationSeconds: seconds, renewTime: microTime() };
        if (fresh) {
          spec.acquireTime = spec.renewTime;
          spec.leaseTransitions = Number(spec.leaseTransitions ?? 0) + 1;
        }
        const meta = cur.metadata as Json;
        const annotations = { ...(meta.annotations as Record<string, string>), ...(fresh ? { [A_CLAIMED_AT]: new Date().toISOString() } : {}) };
        const path = claimPath(metaOf(cur).name);
        try {
          const obj = await this.client.request("PUT", path, { body: { ...cur, metadata: { ...meta, annotations }, spec } });
          return { path, obj };
        } catch (err) {
          if (isApiError(err, 409) || isApiError(err, 404)) return undefined; // someone else moved first
          throw err;
        }
      };
      if (own) {
        const h = await takeOver(own.obj, false);
        if (h) return { cidr: own.claim.cidr, held: h };
        continue;
      }
      const taken = new Set(claims.filter(({ claim }) => claim.expires > now).map(({ claim }) => claim.cidr));
      const pick = pickFreeSubnet(cluster, prefix, taken, attempt === 0 ? node : `${node}#${attempt}`);
      if (!pick) {
        throw new ExhaustedError(`no free /${prefix} node subnet is left in ${clusterText} (${subnetCount(cluster, prefix)} in all, held by live nodes or reserved for dead ones during their grace period): use a larger cluster CIDR or remove dead nodes with \`weft node delete\``);
      }
      const cidr = formatCidr(pick);
      const name = claimName(cidr);
      const expired = claims.find(({ claim }) => claim.name === name);
      if (expired) {
        const h = await takeOver(expired.obj, true);
        if (h) {
          await this.retireDeadNode(expired.claim.node, cidr);
          return { cidr, held: h };
        }
        continue;
      }
      const body = leaseBody(name, CLAIM_NAMESPACE, node, seconds, {
        labels: { [CLAIM_LABEL]: "true" },
        annotations: { [A_CIDR]: cidr, [A_CLAIMED_AT]: new Date().toISOString() },
      });
      try {
        const obj = await this.client.request("POST", claimPath(), { body });
        return { cidr, held: { path: claimPath(name), obj } };
      } catch (err) {
        if (!isApiError(err, 409)) throw err;
      }
    }
    throw new ConflictError("Contention", `node ${node} lost the race for a subnet of ${clusterText} ${MAX_CAS_ATTEMPTS} times in a row: too many agents registering at once; retry`);
  }

  /** A dead node whose subnet went to someone else must not keep showing it (kubectl get nodes). */
  private async retireDeadNode(name: string, cidr: string): Promise<void> {
    try {
      const node = await this.getOrUndefined(nodePath(name));
      if (!node || metaOf(node).labels?.[NODE_LABEL] !== "true") return;
      const info = decodeNode(node);
      if (!info?.podCIDRs.includes(cidr)) return;
      const lease = await this.getOrUndefined(nodeLeasePath(name));
      if (lease && leaseExpiry(lease) > Date.now()) return;
      await this.client.request("DELETE", nodePath(name), { body: { apiVersion: "v1", kind: "DeleteOptions", preconditions: { resourceVersion: metaOf(node).resourceVersion } } });
    } catch {
      // Best effort: the node is dead either way, and weft does not list dead nodes.
    }
  }

  private async upsertNode(r: NodeRegistration, podCIDRs: string[], ttl: number): Promise<Json> {
    const annotations = {
      [A_BACKEND]: JSON.stringify(r.backendData ?? {}),
      [A_ADDRESSES]: r.addresses.join(","),
      [A_REGISTERED]: new Date().toISOString(),
      [A_TTL]: String(ttl),
    };
    const internal = r.addresses.map((address) => ({ type: "InternalIP", address }));
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = await this.getOrUndefined(nodePath(r.name));
      if (!cur) {
        try {
          return this.checkPodCIDRs(await this.client.request("POST", nodePath(), {
            body: {
              apiVersion: "v1", kind: "Node",
              metadata: { name: r.name, labels: { [NODE_LABEL]: "true", "kubernetes.io/hostname": r.name }, annotations },
              spec: { podCIDR: podCIDRs[0], podCIDRs },
              status: { addresses: [...internal, { type: "Hostname", address: r.name }] },
            },
          }), podCIDRs);
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
          throw new ConflictError("AlreadyExists", `Node ${r.name} already has podCIDRs ${have.join(",")} that weft did not assign (kube-controller-manager --allocate-node-cidrs?): turn that off, or make weft's cluster CIDR the same and delete the Node`);
        }
        // spec.podCIDRs cannot change once set: the Node is recreated with everything else kept.
        const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ct, managedFields: _mf, ...keep } = meta;
        try {
          await this.client.request("DELETE", nodePath(r.name), { body: { apiVersion: "v1", kind: "DeleteOptions", preconditions: { uid: meta.uid } } });
          await this.client.request("POST", nodePath(), { body: { ...cur, metadata: keep, spec: { ...spec, podCIDR: podCIDRs[0], podCIDRs } } });
        } catch (err) {
          if (!isApiError(err, 409) && !isApiError(err, 404)) throw err;
        }
        continue;
      }
      const next = {
        ...cur,
        metadata: { ...meta, labels: { ...(meta.labels ?? {}), [NODE_LABEL]: "true" }, annotations: { ...(meta.annotations ?? {}), ...annotations } },
        spec: { ...spec, podCIDR: podCIDRs[0], podCIDRs },
      };
      let out: Json;
      try {
        out = await this.client.request("PUT", nodePath(r.name), { body: next });
      } catch (err) {
        if (isApiError(err, 409)) continue;
        throw err;
      }
      return await this.syncAddresses(this.checkPodCIDRs(out, podCIDRs), internal);
    }
    throw new ConflictError("Contention", `Node ${r.name} kept changing while weft registered it; retry`);
  }

  /** 1.20 without the IPv6DualStack feature gate keeps only the first of a Node's podCIDRs. */
  private checkPodCIDRs(node: Json, podCIDRs: string[]): Json {
    const got = ((node.spec ?? {}) as { podCIDRs?: string[] }).podCIDRs ?? [];
    if (stableStringify(got) !== stableStringify(podCIDRs)) {
      throw new InvalidError(
        `${this.description} stored Node ${metaOf(node).name} with podCIDRs ${got.join(",") || "(none)"} instead of ${podCIDRs.join(",")}: ` +
          `for dual-stack nodes Kubernetes 1.20 needs kube-apiserver --feature-gates=IPv6DualStack=true; restart it with that flag (weft replaces the Node), or use one cluster CIDR`,
      );
    }
    return node;
  }

  /** status.addresses: weft's underlay addresses as the InternalIPs, other entries kept. */
  async syncAddresses(node: Json, internal: Array<{ type: string; address: string }>): Promise<Json> {
    let cur = node;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const status = (cur.status ?? {}) as Json & { addresses?: Array<{ type: string; address: string }> };
      const have = status.addresses ?? [];
      const want = [...internal, ...have.filter((a) => a.type !== "InternalIP")];
      if (stableStringify(have.filter((a) => a.type === "InternalIP")) === stableStringify(internal)) return cur;
      try {
        return await this.client.request("PUT", `${nodePath(metaOf(cur).name)}/status`, { body: { ...cur, status: { ...status, addresses: want } } });
      } catch (err) {
        if (!isApiError(err, 409)) throw err;
        cur = await this.client.request("GET", nodePath(metaOf(cur).name));
      }
    }
    return cur;
  }

  private async upsertNodeLease(name: string, ttl: number, nodeUid: string): Promise<Held> {
    const path = nodeLeasePath(name);
    const ownerReferences = [{ apiVersion: "v1", kind: "Node", name, uid: nodeUid }];
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = await this.getOrUndefined(path);
      try {
        if (!cur) {
          const obj = await this.client.request("POST", nodeLeasePath(), { body: leaseBody(name, NODE_LEASE_NAMESPACE, name, ttl, { ownerReferences }) });
          return { path, obj };
        }
        const now = microTime();
        const spec = { ...(cur.spec as Json), holderIdentity: name, leaseDurationSeconds: ttl, acquireTime: now, renewTime: now };
        const obj = await this.client.request("PUT", path, { body: { ...cur, metadata: { ...(cur.metadata as Json), ownerReferences }, spec } });
        return { path, obj };
      } catch (err) {
        if (!isApiError(err, 409)) throw err;
      }
    }
    throw new ConflictError("Contention", `Lease ${NODE_LEASE_NAMESPACE}/${name} kept changing while weft registered the node; retry`);
  }

  /** Renews one held Lease; a lease that is gone or now held by someone else means we lost it. */
  async renew(h: Held, holder: string): Promise<Held> {
    let cur = h.obj;
    for (let attempt = 0; attempt < 5; attempt++) {
      const spec = { ...(cur.spec as Json), renewTime: microTime() };
      try {
        return { path: h.path, obj: await this.client.request("PUT", h.path, { body: { ...cur, spec } }) };
      } catch (err) {
        if (isApiError(err, 404)) throw new LostError(`${h.path} was deleted`);
        if (!isApiError(err, 409)) throw err;
      }
      try {
        cur = await this.client.request("GET", h.path);
      } catch (err) {
        if (isApiError(err, 404)) throw new LostError(`${h.path} was deleted`);
        throw err;
      }
      const now = (cur.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
      if (now !== holder) throw new LostError(`${h.path} is now held by ${now ?? "nobody"}`);
    }
    throw new UnavailableError(`${h.path} kept changing while being renewed`);
  }

  async deleteIfHeld(h: Held): Promise<void> {
    try {
      await this.client.request("DELETE", h.path, { body: { apiVersion: "v1", kind: "DeleteOptions", preconditions: { resourceVersion: metaOf(h.obj).resourceVersion } } });
    } catch (err) {
      // Gone, or renewed by someone else since (a restarted agent): not ours to delete.
      if (!isApiError(err, 404) && !isApiError(err, 409)) throw err;
    }
  }

  async getNode(name: string): Promise<NodeInfo | undefined> {
    dnsSubdomain("node name", name);
    const [node, lease] = await Promise.all([this.getOrUndefined(nodePath(name)), this.getOrUndefined(nodeLeasePath(name))]);
    if (!node || !lease || leaseExpiry(lease) <= Date.now()) return undefined;
    return decodeNode(node);
  }

  async listNodes(): Promise<NodeInfo[]> {
    const [nodes, leases] = await Promise.all([
      this.client.request<{ items?: Json[] }>("GET", nodePath(), { query: { labelSelector: `${NODE_LABEL}=true` } }),
      this.client.request<{ items?: Json[] }>("GET", nodeLeasePath()),
    ]);
    const expiry = new Map((leases.items ?? []).map((l) => [metaOf(l).name, leaseExpiry(l)]));
    const now = Date.now();
    return (nodes.items ?? [])
      .map(decodeNode)
      .filter((n): n is NodeInfo => n !== undefined && (expiry.get(n.name) ?? 0) > now)
      .sort(byName);
  }

  watchNodes(listener: WatchListener<NodeInfo>, options: WatchOptions = {}): WatchHandle {
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
        timers.set(name, setTimeout(() => evaluate(name), until - Date.now() + 5));
      } else if (prev) {
        emitted.delete(name);
        deliver({ type: "removed", object: prev });
      }
    };
    const nodeInf = runInformer(this.client, nodePath(), {
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
    }, `${NODE_LABEL}=true`);
    const leaseInf = runInformer(this.client, nodeLeasePath(), {
      upsert: (o) => {
        expiry.set(metaOf(o).name, leaseExpiry(o));
        evaluate(metaOf(o).name);
      },
      remove: (o) => {
        expiry.delete(metaOf(o).name);
        evaluate(metaOf(o).name);
      },
    });
    const ready = Promise.all([nodeInf.ready, leaseInf.ready]).then(() => { live = true; });
    return this.track({
      ready,
      close: async () => {
        closed = true;
        for (const t of timers.values()) clearTimeout(t);
        await Promise.all([nodeInf.close(), leaseInf.close()]);
      },
    });
  }

  async listSubnetClaims(): Promise<SubnetClaim[]> {
    const now = Date.now();
    return (await this.listClaims())
      .filter(({ claim }) => claim.expires > now)
      .map(({ claim }) => ({ cidr: claim.cidr, node: claim.node, claimedAt: claim.claimedAt }));
  }

  async removeNode(name: string): Promise<void> {
    dnsSubdomain("node name", name);
    const [node, lease, claims] = await Promise.all([this.getOrUndefined(nodePath(name)), this.getOrUndefined(nodeLeasePath(name)), this.listClaims()]);
    const own = claims.filter(({ claim }) => claim.node === name);
    const weftNode = node && metaOf(node).labels?.[NODE_LABEL] === "true" ? node : undefined;
    if (!weftNode && !lease && own.length === 0) throw new NotFoundError(`node "${name}" not found in ${this.description}`);
    const del = async (path: string): Promise<void> => {
      try {
        await this.client.request("DELETE", path);
      } catch (err) {
        if (!isApiError(err, 404)) throw err;
      }
    };
    await Promise.all([
      ...(weftNode ? [del(nodePath(name))] : []),
      ...(lease ? [del(nodeLeasePath(name))] : []),
      ...own.map(({ claim }) => del(claimPath(claim.name))),
    ]);
  }

  track(w: WatchHandle): WatchHandle {
    this.watches.add(w);
    return {
      ready: w.ready,
      close: async () => {
        this.watches.delete(w);
        await w.close();
      },
    };
  }

  forget(lease: KubeNodeLease): void {
    this.leases.delete(lease);
  }

  async close(): Promise<void> {
    for (const l of this.leases) l.stop();
    this.leases.clear();
    await Promise.allSettled([...this.watches].map((w) => w.close()));
    this.watches.clear();
    this.client.close();
  }
}

class KubeNodeLease extends RecoveringLease implements NodeLease {
  private held: Held[] = [];
  private timer?: NodeJS.Timeout;
  private lastRenewed = 0;
  private inflight: Promise<void> = Promise.resolve();

  constructor(private readonly store: KubernetesStore, private reg: NodeRegistration, private readonly ttl: number, private readonly grace: number) {
    super();
  }

  async establish(): Promise<void> {
    const { node, held } = await this.store.registerOnce(this.reg, this.ttl, this.grace);
    this.node = node;
    this.held = held;
    this.lastRenewed = Date.now();
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => { this.inflight = this.renewAll(); }, (this.ttl * 1000) / 3);
    this.timer.unref?.();
  }

  private async renewAll(): Promise<void> {
    if (this.stopped || this.recovering) return;
    try {
      const next: Held[] = [];
      for (const h of this.held) next.push(await this.store.renew(h, this.reg.name));
      // Kept even if released meanwhile: release() deletes by the latest resourceVersion.
      this.held = next;
      if (this.stopped) return;
      this.lastRenewed = Date.now();
      this.schedule();
    } catch (err) {
      if (this.stopped) return;
      // Unreachable for less than a TTL: others still see the node; keep trying.
      if (!(err instanceof LostError) && Date.now() - this.lastRenewed < this.ttl * 1000) {
        this.schedule();
        return;
      }
      this.lost(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private lost(err: Error): void {
    if (this.stopped || this.recovering) return;
    clearTimeout(this.timer);
    this.startRecovery(err instanceof LostError ? new UnavailableError(`node ${this.reg.name} lost its registration (${err.message}); re-registering`) : err);
  }

  async update(patch: { addresses?: string[]; backendData?: Record<string, string> }): Promise<NodeInfo> {
    if (this.stopped) throw new InvalidError(`node ${this.reg.name}: the lease was released`);
    if (this.recovering) throw new UnavailableError(`node ${this.reg.name}: the registration is being re-established after a store outage; retry shortly`);
    const r = normalizeRegistration({ ...this.reg, ...patch });
    const client = this.store.client;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = await client.request("GET", nodePath(r.name));
      const meta = cur.metadata as Json & { annotations?: Record<string, string> };
      const annotations = { ...(meta.annotations ?? {}), [A_BACKEND]: JSON.stringify(r.backendData ?? {}), [A_ADDRESSES]: r.addresses.join(",") };
      let out: Json;
      try {
        out = await client.request("PUT", nodePath(r.name), { body: { ...cur, metadata: { ...meta, annotations } } });
      } catch (err) {
        if (isApiError(err, 409)) continue;
        throw err;
      }
      out = await this.store.syncAddresses(out, r.addresses.map((address) => ({ type: "InternalIP", address })));
      this.reg = r;
      this.node = decodeNode(out)!;
      return this.node;
    }
    throw new ConflictError("Contention", `Node ${r.name} kept changing while being updated; retry`);
  }

  /** Stops renewing (store close: the Leases run out by themselves, as after a crash). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  async release(options: { freeSubnets?: boolean } = {}): Promise<void> {
    this.stop();
    this.store.forget(this);
    await this.inflight; // a renewal in flight would change the resourceVersion under the delete
    const [nodeLease, ...claims] = this.held;
    if (nodeLease) await this.store.deleteIfHeld(nodeLease);
    if (options.freeSubnets) await Promise.all(claims.map((c) => this.store.deleteIfHeld(c)));
  }
}

