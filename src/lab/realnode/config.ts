// The files a real node runs from: containerd's config.toml and the kubelet's KubeletConfiguration.
// Every path is the node's own (its directory in the lab); the standard host paths a CNI
// DaemonSet uses (/opt/cni/bin, /etc/cni/net.d, ...) are the node's own through its mount namespace.
import { stringify } from "yaml";

export const SANDBOX_IMAGE = "localhost/weft/pause:3.4";

export interface ContainerdPaths {
  root: string;
  state: string;
  socket: string;
  /** containerd's "opt" plugin installs into this (default /opt/containerd on the machine). */
  opt: string;
}

const toml = (s: string) => JSON.stringify(s);

/** containerd 1.6 config (version 2) with the CRI plugin (REAL-NODE.md §2, verified here). */
export function containerdConfig(p: ContainerdPaths): string {
  return `version = 2
root = ${toml(p.root)}
state = ${toml(p.state)}
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = ${toml(p.socket)}

[ttrpc]
  address = ${toml(`${p.socket}.ttrpc`)}

[plugins."io.containerd.internal.v1.opt"]
  path = ${toml(p.opt)}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${toml(SANDBOX_IMAGE)}
  # This machine lacks CAP_SYS_RESOURCE: containerd's -998 for sandboxes would fail every pod.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    # The node's own directories, bound over these paths in its mount namespace.
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`;
}

export interface KubeletConfigInput {
  cgroupRoot: string;
  dualStack: boolean;
}

/** KubeletConfiguration v1beta1 (kind's pre-1.24 values; REAL-NODE.md §1). */
export function kubeletConfig(i: KubeletConfigInput): string {
  return stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    cgroupDriver: "cgroupfs",
    cgroupsPerQOS: true,
    cgroupRoot: i.cgroupRoot,
    enforceNodeAllocatable: ["pods"],
    failSwapOn: false,
    // No registry to pull images back from.
    imageGCHighThresholdPercent: 100,
    evictionHard: { "nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%" },
    // Keep the machine's iptables clean (and there is no kube-proxy).
    makeIPTablesUtilChains: false,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
    authorization: { mode: "AlwaysAllow" },
    ...(i.dualStack ? { featureGates: { IPv6DualStack: true } } : {}),
  });
}
