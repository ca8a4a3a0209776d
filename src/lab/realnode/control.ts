// kube-controller-manager and kube-scheduler 1.20 over the lab's kube-apiserver. They serve no
// port (--port=0 --secure-port=0) and run in the first node's network namespace, where that
// node's forwarder gives them the apiserver on 127.0.0.1:6443.
import { join } from "node:path";
import { netnsPathOf } from "../names.js";
import { isAlive, spawnDetached, type ProcRef } from "../procs.js";
import type { LabNode } from "../state.js";
import type { Binaries } from "./host.js";

export interface ControlInput {
  labDir: string;
  node: LabNode;
  kubeconfig: string;
  /** The apiserver's service-account signing key and serving CA (tokens for pods' ServiceAccounts). */
  saKeyFile: string;
  rootCaFile: string;
  clusterCidrs: readonly string[];
}

export function controllerManagerArgv(b: Binaries, c: ControlInput): string[] {
  const dual = c.clusterCidrs.length > 1;
  return [
    "nsenter",
    `--net=${netnsPathOf(c.node.netns)}`,
    "--",
    b.controllerManager,
    `--kubeconfig=${c.kubeconfig}`,
    "--leader-elect=false",
    "--port=0",
    "--secure-port=0",
    "--use-service-account-credentials=false",
    `--service-account-private-key-file=${c.saKeyFile}`,
    `--root-ca-file=${c.rootCaFile}`,
    // Node.spec.podCIDRs from the lab's cluster CIDRs (the kubeadm default flannel relies on).
    "--allocate-node-cidrs=true",
    `--cluster-cidr=${c.clusterCidrs.join(",")}`,
    ...(dual
      ? ["--feature-gates=IPv6DualStack=true", "--node-cidr-mask-size-ipv4=24", "--node-cidr-mask-size-ipv6=64"]
      : ["--node-cidr-mask-size=24"]),
    "--v=1",
  ];
}

export function ensureControllerManager(b: Binaries, c: ControlInput, have: ProcRef | undefined): ProcRef {
  if (isAlive(have)) return have!;
  return spawnDetached(controllerManagerArgv(b, c), { log: join(c.labDir, "kube-controller-manager.log") });
}

export function ensureScheduler(b: Binaries, c: ControlInput, have: ProcRef | undefined): ProcRef {
  if (isAlive(have)) return have!;
  return spawnDetached(
    [
      "nsenter",
      `--net=${netnsPathOf(c.node.netns)}`,
      "--",
      b.scheduler,
      `--kubeconfig=${c.kubeconfig}`,
      "--leader-elect=false",
      "--port=0",
      "--secure-port=0",
      "--v=1",
    ],
    { log: join(c.labDir, "kube-scheduler.log") },
  );
}
