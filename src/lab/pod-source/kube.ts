// The lab kubelet's view of a real kube-apiserver (--store kubernetes): an informer on Pods, the
// scheduler's Binding subresource for placement, the status subresource for status, and Node
// objects for the lab's nodes (what each node's kubelet registers).
import * as k8s from "@kubernetes/client-node";
import type { LabNode } from "../state.js";
import type { PodEvent, PodObject, PodSource } from "./types.js";

function plain(o: unknown): PodObject {
  // The client hands out class instances with Date fields; the kubelet works on JSON shapes.
  return JSON.parse(JSON.stringify(o)) as PodObject;
}

export class KubePodSource implements PodSource {
  readonly description: string;
  private readonly kc = new k8s.KubeConfig();
  private readonly api: k8s.CoreV1Api;

  constructor(kubeconfig: string) {
    this.kc.loadFromFile(kubeconfig);
    this.api = this.kc.makeApiClient(k8s.CoreV1Api);
    this.description = `kube-apiserver at ${this.kc.getCurrentCluster()?.server ?? "?"}`;
  }

  watch(listener: (ev: PodEvent) => void): { ready: Promise<void>; close(): Promise<void> } {
    const inf = k8s.makeInformer(this.kc, "/api/v1/pods", () => this.api.listPodForAllNamespaces());
    inf.on("add", (p) => listener({ type: "added", pod: plain(p) }));
    inf.on("update", (p) => listener({ type: "updated", pod: plain(p) }));
    inf.on("delete", (p) => listener({ type: "removed", pod: plain(p) }));
    // The informer stops on errors (apiserver restart, expired watch); start it again.
    inf.on("error", () => setTimeout(() => void inf.start().catch(() => undefined), 1000));
    return { ready: inf.start(), close: () => inf.stop() };
  }

  async bind(pod: PodObject, node: string): Promise<void> {
    await this.api.createNamespacedBinding({
      namespace: pod.metadata.namespace ?? "default",
      body: {
        apiVersion: "v1",
        kind: "Binding",
        metadata: { name: pod.metadata.name, uid: pod.metadata.uid },
        target: { apiVersion: "v1", kind: "Node", name: node },
      },
    });
  }

  async updateStatus(namespace: string, name: string, status: Record<string, unknown>): Promise<void> {
    const cur = await this.api.readNamespacedPod({ name, namespace });
    cur.status = status as k8s.V1PodStatus;
    await this.api.replaceNamespacedPodStatus({ name, namespace, body: cur });
  }

  async confirmDeleted(pod: PodObject): Promise<void> {
    try {
      await this.api.deleteNamespacedPod({
        name: pod.metadata.name,
        namespace: pod.metadata.namespace ?? "default",
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid } },
      });
    } catch (e) {
      if ((e as { code?: number }).code !== 404) throw e;
    }
  }

  /** Node objects with the underlay address as InternalIP and a Ready condition. */
  /**
   * What each node's kubelet does: the Node exists (weft's agents create theirs in cluster mode)
   * and its status carries the node's addresses and Ready, so `kubectl get nodes` says Ready.
   */
  async registerNodes(nodes: readonly LabNode[]): Promise<void> {
    for (const n of nodes) {
      // An agent may update its Node (annotations) at the same moment: re-read on a conflict.
      for (let attempt = 0; ; attempt++) {
        let node: k8s.V1Node;
        try {
          node = await this.api.readNode({ name: n.name });
        } catch {
          node = await this.api.createNode({
            body: {
              apiVersion: "v1",
              kind: "Node",
              metadata: { name: n.name, labels: { "kubernetes.io/hostname": n.name } },
            },
          });
        }
        const now = new Date();
        node.status = {
          ...node.status,
          addresses: [
            { type: "InternalIP", address: n.ipv4 },
            ...(n.ipv6 ? [{ type: "InternalIP", address: n.ipv6 }] : []),
            { type: "Hostname", address: n.name },
          ],
          conditions: [
            {
              type: "Ready",
              status: "True",
              reason: "KubeletReady",
              message: "weft lab kubelet",
              lastHeartbeatTime: now,
              lastTransitionTime: now,
            },
          ],
        };
        try {
          await this.api.replaceNodeStatus({ name: n.name, body: node });
          break;
        } catch (e) {
          if ((e as { code?: number }).code !== 409 || attempt >= 4) throw e;
        }
      }
    }
  }

  async close(): Promise<void> {
    // Nothing to release: requests are one-shot.
  }
}
