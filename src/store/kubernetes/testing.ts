// Test helpers for the Kubernetes store's tests (one apiserver shared by a file's tests).
import { KubeClient, type Json } from "./client.js";
import {
  CLAIM_LABEL,
  claimPath,
  NODE_LEASE_LABEL,
  nodeLeasePath,
  nodePath,
  settingsPath,
  SETTINGS_NAME,
} from "./layout.js";

const SYSTEM_NAMESPACES = new Set(["default", "kube-system", "kube-public", "kube-node-lease"]);

/** Everything weft or a case wrote, gone: an empty cluster for the next case (one apiserver for all). */
export async function wipe(kubeconfig: string): Promise<void> {
  const c = KubeClient.fromFile(kubeconfig);
  const del = async (path: string, query?: Record<string, string>): Promise<void> => {
    try {
      await c.request("DELETE", path, { query });
    } catch (err) {
      if ((err as { status?: number }).status !== 404) throw err;
    }
  };
  try {
    await del(nodePath());
    await del(nodeLeasePath(), { labelSelector: `${NODE_LEASE_LABEL}=true` });
    await del("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases");
    await del(claimPath(), { labelSelector: `${CLAIM_LABEL}=true` });
    await del(settingsPath(SETTINGS_NAME));
    const namespaces = (await c.request<{ items: Json[] }>("GET", "/api/v1/namespaces")).items.map(
      (n) => (n.metadata as { name: string }).name,
    );
    for (const ns of namespaces) {
      await del(`/api/v1/namespaces/${ns}/pods`, { gracePeriodSeconds: "0" });
      await del(`/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`);
      if (SYSTEM_NAMESPACES.has(ns)) continue;
      // No controller-manager here: finish the namespace's deletion ourselves (empty finalizers).
      await del(`/api/v1/namespaces/${ns}`);
      try {
        const cur = await c.request<Json>("GET", `/api/v1/namespaces/${ns}`);
        await c.request("PUT", `/api/v1/namespaces/${ns}/finalize`, { body: { ...cur, spec: { finalizers: [] } } });
      } catch (err) {
        if ((err as { status?: number }).status !== 404) throw err;
      }
    }
  } finally {
    c.close();
  }
}
