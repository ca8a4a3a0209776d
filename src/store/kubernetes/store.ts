// ClusterStore over a real kube-apiserver (see layout.ts for where things live). Nodes are v1 Node
// objects that weft's agent registers (nodes.ts: spec.podCIDRs, backend data in annotations);
// liveness is a coordination.k8s.io Lease in kube-node-lease that the agent renews (leases.ts);
// subnets are claimed with create-only / resourceVersion-checked Lease objects (claims.ts);
// settings are a create-only ConfigMap (settings.ts); objects are the API's own (objects.ts).
import { registerNode, subnetPlan } from "../registration.js";
import {
  NotFoundError,
  type ClusterSettings,
  type ClusterSettingsInput,
  type ClusterStore,
  type NodeInfo,
  type NodeLease,
  type NodeRegistration,
  type ObjectStore,
  type RegisterOptions,
  type SubnetClaim,
  type WatchHandle,
  type WatchListener,
  type WatchOptions,
} from "../types.js";
import { dnsSubdomain } from "../validate.js";
import { getOrUndefined, isApiError, type KubeClient } from "./client.js";
import { claimSubnetLease, listClaims } from "./claims.js";
import { claimPath, metaOf, NODE_LABEL, nodeLeasePath, nodePath } from "./layout.js";
import { KubeNodeLease, upsertNodeLease, type Held } from "./leases.js";
import { decodeNode, getLiveNode, listLiveNodes, upsertNode, watchLiveNodes } from "./nodes.js";
import { KubeObjectStore } from "./objects.js";
import { getClusterSettings, initCluster } from "./settings.js";

export { decodeNode } from "./nodes.js";
export { DEFAULT_SUBNET_GRACE_SECONDS, DEFAULT_TTL_SECONDS } from "../registration.js";

export class KubernetesStore implements ClusterStore {
  readonly description: string;
  readonly objects: ObjectStore;
  private readonly leases = new Set<KubeNodeLease>();
  private readonly watches = new Set<WatchHandle>();

  constructor(readonly client: KubeClient) {
    this.description = client.description;
    this.objects = new KubeObjectStore(client, (w) => this.track(w));
  }

  initCluster(input: ClusterSettingsInput): Promise<{ settings: ClusterSettings; created: boolean }> {
    return initCluster(this.client, input);
  }

  getClusterSettings(): Promise<ClusterSettings | undefined> {
    return getClusterSettings(this.client);
  }

  registerNode(reg: NodeRegistration, options: RegisterOptions = {}): Promise<NodeLease> {
    return registerNode(
      reg,
      options,
      (r, ttl, grace) => new KubeNodeLease(this, r, ttl, grace),
      (l) => this.leases.add(l),
    );
  }

  /** One registration round: subnet claims (own ones first), the Node, then its Lease. */
  async registerOnce(r: NodeRegistration, ttl: number, grace: number): Promise<{ node: NodeInfo; held: Held[] }> {
    const plan = subnetPlan(await this.getClusterSettings(), this.description);
    const held: Held[] = [];
    const podCIDRs: string[] = [];
    for (const { clusterCIDR, prefix } of plan) {
      const claim = await claimSubnetLease(this.client, r.name, clusterCIDR, prefix, ttl + grace);
      podCIDRs.push(claim.cidr);
      held.push(claim.held);
    }
    const node = await upsertNode(this.client, r, podCIDRs, ttl);
    const lease = await upsertNodeLease(this.client, r.name, ttl, metaOf(node).uid);
    held.unshift(lease);
    return { node: decodeNode(node)!, held };
  }

  async getNode(name: string): Promise<NodeInfo | undefined> {
    return getLiveNode(this.client, name);
  }

  listNodes(): Promise<NodeInfo[]> {
    return listLiveNodes(this.client);
  }

  watchNodes(listener: WatchListener<NodeInfo>, options: WatchOptions = {}): WatchHandle {
    return this.track(watchLiveNodes(this.client, listener, options));
  }

  async listSubnetClaims(): Promise<SubnetClaim[]> {
    const now = Date.now();
    return (await listClaims(this.client))
      .filter((c) => c.expires > now)
      .map((c) => ({ cidr: c.cidr, node: c.node, claimedAt: c.claimedAt }));
  }

  async removeNode(name: string): Promise<void> {
    dnsSubdomain("node name", name);
    const [node, lease, claims] = await Promise.all([
      getOrUndefined(this.client, nodePath(name)),
      getOrUndefined(this.client, nodeLeasePath(name)),
      listClaims(this.client),
    ]);
    const own = claims.filter((c) => c.node === name);
    const weftNode = node && metaOf(node).labels?.[NODE_LABEL] === "true" ? node : undefined;
    if (!weftNode && !lease && own.length === 0)
      throw new NotFoundError(`node "${name}" not found in ${this.description}`);
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
      ...own.map((c) => del(claimPath(c.name))),
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
