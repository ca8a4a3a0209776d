// ClusterStore over a real kube-apiserver (see layout.ts for where things live). Nodes are v1 Node
// objects that weft annotates (nodes.ts: backend data and pod CIDRs in annotations; a kubelet or
// kube-controller-manager owns the rest); liveness is weft's own coordination.k8s.io Lease that the
// agent renews (leases.ts); with podCIDRSource "weft" subnets are claimed with create-only /
// resourceVersion-checked Lease objects (claims.ts), with "node" they are the Node's spec.podCIDRs;
// settings are a create-only ConfigMap (settings.ts); objects are the API's own (objects.ts).
import { registerNode, subnetPlan } from "../registration.js";
import {
  ConflictError,
  NotFoundError,
  type ClusterSettings,
  type ClusterSettingsInput,
  type EncryptionSettingsInput,
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
import { claimExactSubnet, claimSubnetLease, listClaims } from "./claims.js";
import { claimPath, metaOf, NODE_ANNOTATIONS, NODE_LABEL, nodeLeasePath, nodePath } from "./layout.js";
import { deleteIfHeld, KubeNodeLease, upsertNodeLease, type Held } from "./leases.js";
import {
  decodeNode,
  getLiveNode,
  listLiveNodes,
  markNetworkUp,
  orderNodeCIDRs,
  recordedCIDRs,
  sameCIDRs,
  specCIDRs,
  waitForNodeCIDRs,
  watchLiveNodes,
  writeNode,
} from "./nodes.js";
import { KubeObjectStore } from "./objects.js";
import { getClusterSettings, initCluster, setEncryption } from "./settings.js";

export { decodeNode } from "./nodes.js";

/** How long registration waits for kube-controller-manager to give a Node its podCIDRs (source "node"). */
export const DEFAULT_POD_CIDR_WAIT_MS = 120_000;

export interface KubernetesStoreTuning {
  /** podCIDRSource "node": how long to wait for the Node's spec.podCIDRs. Default 2 minutes. */
  podCIDRWaitMs?: number;
  /** Where progress lines go (what registration waits for). Default: stderr. */
  log?: (line: string) => void;
}
export { DEFAULT_SUBNET_GRACE_SECONDS, DEFAULT_TTL_SECONDS } from "../registration.js";

export class KubernetesStore implements ClusterStore {
  readonly description: string;
  readonly objects: ObjectStore;
  private readonly leases = new Set<KubeNodeLease>();
  private readonly watches = new Set<WatchHandle>();

  private readonly options: { podCIDRWaitMs: number };
  private readonly log: (line: string) => void;

  constructor(
    readonly client: KubeClient,
    options: KubernetesStoreTuning = {},
  ) {
    this.description = client.description;
    this.options = { podCIDRWaitMs: options.podCIDRWaitMs ?? DEFAULT_POD_CIDR_WAIT_MS };
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.objects = new KubeObjectStore(client, (w) => this.track(w));
  }

  initCluster(input: ClusterSettingsInput): Promise<{ settings: ClusterSettings; created: boolean }> {
    return initCluster(this.client, input);
  }

  getClusterSettings(): Promise<ClusterSettings | undefined> {
    return getClusterSettings(this.client);
  }

  setEncryption(input: EncryptionSettingsInput): Promise<{ settings: ClusterSettings; changed: boolean }> {
    return setEncryption(this.client, input);
  }

  registerNode(reg: NodeRegistration, options: RegisterOptions = {}): Promise<NodeLease> {
    return registerNode(
      reg,
      options,
      (r, ttl, grace) => new KubeNodeLease(this, r, ttl, grace),
      (l) => this.leases.add(l),
    );
  }

  /**
   * One registration round. podCIDRSource "weft": subnet claims (own ones first; the subnets weft
   * gave an existing Node before, as its spec.podCIDRs cannot change), then weft's part of the Node.
   * "node": the Node's spec.podCIDRs from kube-controller-manager (waited for), no claims. Then the
   * node's liveness Lease and NetworkUnavailable=False.
   */
  async registerOnce(r: NodeRegistration, ttl: number, grace: number): Promise<{ node: NodeInfo; held: Held[] }> {
    const stored = await this.getClusterSettings();
    const plan = subnetPlan(stored, this.description); // NotInitializedError without settings
    const settings = stored!;
    const held: Held[] = [];
    let podCIDRs: string[] = [];
    if (settings.podCIDRSource === "node") {
      podCIDRs = (await waitForNodeCIDRs(this.client, r.name, settings, this.options.podCIDRWaitMs, this.log)).podCIDRs;
    } else {
      const cur = await getOrUndefined(this.client, nodePath(r.name));
      const have = cur ? specCIDRs(cur) : [];
      if (cur && have.length > 0) {
        if (!sameCIDRs(recordedCIDRs(cur), have))
          throw new ConflictError(
            "AlreadyExists",
            `Node ${r.name} already has spec.podCIDRs ${have.join(",")} that weft did not assign (kube-controller-manager --allocate-node-cidrs?): ` +
              `set podCIDRSource "node" in the cluster settings (ConfigMap kube-system/weft-config) so weft uses them, or stop the controller-manager assigning them`,
          );
        // weft gave this Node its subnets before: they are the only ones it can have.
        podCIDRs = orderNodeCIDRs(r.name, have, settings, "weft");
        for (const cidr of podCIDRs) held.push(await claimExactSubnet(this.client, r.name, cidr, ttl + grace));
      } else {
        for (const { clusterCIDR, prefix } of plan) {
          const claim = await claimSubnetLease(this.client, r.name, clusterCIDR, prefix, ttl + grace);
          podCIDRs.push(claim.cidr);
          held.push(claim.held);
        }
      }
    }
    try {
      let node = await writeNode(this.client, r, podCIDRs, ttl, settings.podCIDRSource === "weft");
      const lease = await upsertNodeLease(this.client, r.name, ttl, metaOf(node).uid);
      held.unshift(lease);
      node = await markNetworkUp(this.client, node);
      return { node: decodeNode(node)!, held };
    } catch (err) {
      // Nothing half-made: subnets claimed anew in this round go back (a reservation it had stays).
      await Promise.allSettled(held.filter((h) => h.fresh).map((h) => deleteIfHeld(this.client, h)));
      throw err;
    }
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

  /** Takes weft's lease, claims, label and registration annotations away; never deletes the Node. */
  async removeNode(name: string): Promise<void> {
    dnsSubdomain("node name", name);
    const [node, lease, claims] = await Promise.all([
      getOrUndefined(this.client, nodePath(name)),
      getOrUndefined(this.client, nodeLeasePath(name)),
      listClaims(this.client),
    ]);
    const own = claims.filter((c) => c.node === name);
    const meta = node ? metaOf(node) : undefined;
    const registered =
      meta?.labels?.[NODE_LABEL] !== undefined || NODE_ANNOTATIONS.some((a) => meta?.annotations?.[a] !== undefined);
    if (!registered && !lease && own.length === 0)
      throw new NotFoundError(`node "${name}" not found in ${this.description}`);
    const del = async (path: string): Promise<void> => {
      try {
        await this.client.request("DELETE", path);
      } catch (err) {
        if (!isApiError(err, 404)) throw err;
      }
    };
    await Promise.all([...(lease ? [del(nodeLeasePath(name))] : []), ...own.map((c) => del(claimPath(c.name)))]);
    if (registered) {
      // weft.dev/pod-cidrs stays: it records that weft gave the Node its (immutable) spec.podCIDRs.
      try {
        await this.client.request("PATCH", nodePath(name), {
          contentType: "application/merge-patch+json",
          body: {
            metadata: {
              labels: { [NODE_LABEL]: null },
              annotations: Object.fromEntries(NODE_ANNOTATIONS.map((a) => [a, null])),
            },
          },
        });
      } catch (err) {
        if (!isApiError(err, 404)) throw err;
      }
    }
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
