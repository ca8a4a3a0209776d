// Opens the lab kubelet's Pod source for the lab's store.
import type { LabState } from "../state.js";
import { openLabStore } from "../store.js";
import { KubePodSource } from "./kube.js";
import { StorePodSource } from "./store.js";
import type { PodSource } from "./types.js";

export type { PodEvent, PodObject, PodSource } from "./types.js";

export async function openPodSource(lab: LabState): Promise<PodSource> {
  if (lab.settings.store === "kubernetes") {
    if (!lab.apiserver) throw new Error("the lab state has no kube-apiserver");
    const src = new KubePodSource(lab.apiserver.kubeconfig);
    // Agents in cluster mode create their own Node; either way the kubelet reports it Ready.
    await src.registerNodes(lab.nodes);
    return src;
  }
  return new StorePodSource(openLabStore(lab));
}
