// Who a pod is, to the policy and to the CNI runtime: its Kubernetes identity from CNI_ARGS, its
// local-pod view for the policy controller, and the CNI result of its attachment.
import type { Result, Route } from "../../cni/types.js";
import type { IpFamily as Family } from "../../net/ip.js";
import type { AttachmentRecord, PodRef } from "../../ipam/store.js";
import { GATEWAY_V4, GATEWAY_V6, type PodRoute } from "../../kernel/pod/types.js";
import type { LocalPod } from "../../policy/index.js";
import { AgentCode, AgentFailure } from "../codes.js";

export const RESULT_VERSION = "1.1.0";

/** The pod a CNI ADD is for, from CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME). */
export function podRefOf(args: Record<string, string>): PodRef | undefined {
  const namespace = args.K8S_POD_NAMESPACE;
  const name = args.K8S_POD_NAME;
  if (!namespace || !name) return undefined;
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace))
    throw new AgentFailure(
      AgentCode.InvalidEnvironment,
      `K8S_POD_NAMESPACE "${namespace}" is not a Kubernetes namespace name`,
    );
  if (name.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name))
    throw new AgentFailure(AgentCode.InvalidEnvironment, `K8S_POD_NAME "${name}" is not a Kubernetes pod name`);
  return { namespace, name };
}

/** Who the policy sees: the Kubernetes pod, or (no K8S_POD_* args) the container under "_cni". */
export function policyIdentity(pod: PodRef | undefined, containerId: string): PodRef {
  return pod ?? { namespace: "_cni", name: containerId };
}

/** Every ready attachment as the policy controller's local pods (one per weft interface). */
export function localPodsOf(records: AttachmentRecord[]): LocalPod[] {
  return records.filter((r) => r.state === "ready").map(localPodOf);
}

export function localPodOf(r: AttachmentRecord): LocalPod {
  // netns pairs a pod's interfaces before its veth exists, so a second interface's ADD waits
  // for its sibling anti-spoof elements.
  return {
    ...policyIdentity(r.pod, r.containerId),
    ifname: r.hostIf,
    ips: r.addresses.map((a) => a.address),
    netns: r.netns,
  };
}

export function buildResult(rec: AttachmentRecord, extraRoutes: PodRoute[] = []): Result {
  // Default routes only for the families this interface carries them for (see PodKernel.wirePod).
  const fams = new Set(rec.defaultRoutes);
  const gw = (f: Family) => (f === 4 ? GATEWAY_V4 : GATEWAY_V6);
  const routes: Route[] = [];
  if (fams.has(4)) routes.push({ dst: "0.0.0.0/0", gw: GATEWAY_V4 });
  if (fams.has(6)) routes.push({ dst: "::/0", gw: GATEWAY_V6 });
  for (const r of extraRoutes) routes.push({ dst: r.dst, gw: gw(r.family) });
  return {
    cniVersion: RESULT_VERSION,
    interfaces: [
      { name: rec.hostIf, mac: rec.hostMac, mtu: rec.mtu },
      { name: rec.ifname, mac: rec.podMac, mtu: rec.mtu, sandbox: rec.netns },
    ],
    ips: rec.addresses.map((a) => ({ address: `${a.address}/${a.prefix}`, gateway: gw(a.family), interface: 1 })),
    routes,
  };
}
