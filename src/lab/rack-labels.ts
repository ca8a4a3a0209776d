// The rack label on each lab node (`rack=r1`, ...), which BGPPeer nodeSelectors select racks by.
// Node labels live on Kubernetes Node objects: a --store kubernetes lab labels them through its
// kube-apiserver once the agents have registered the nodes; the etcd store keeps no Node labels
// (there, a BGPPeer per node, `spec.node`, selects a rack's nodes).
import { KubeClient } from "../store/kubernetes/index.js";
import type { LabState } from "./state.js";

export const RACK_LABEL = "rack";
export const rackLabelValue = (rack: number): string => `r${rack}`;

/** Labels every node with its rack; false when the lab's store has no Node objects. */
export async function labelRackNodes(st: LabState): Promise<boolean> {
  if (st.settings.store !== "kubernetes" || !st.apiserver) return false;
  const client = KubeClient.fromFile(st.apiserver.kubeconfig);
  try {
    for (const n of st.nodes) {
      if (n.rack === undefined) continue;
      await client.request("PATCH", `/api/v1/nodes/${encodeURIComponent(n.name)}`, {
        body: { metadata: { labels: { [RACK_LABEL]: rackLabelValue(n.rack) } } },
        contentType: "application/merge-patch+json",
      });
    }
  } finally {
    client.close();
  }
  return true;
}
