// Backend factory by name (the cluster setting `--backend`).
import { BgpBackend } from "./bgp/index.js";
import { HostGwBackend } from "./host-gw/index.js";
import { BACKEND_NAMES, type Backend, type BackendName, type BackendOptions } from "./types.js";
import { VxlanDirectBackend } from "./vxlan-direct/index.js";
import { VxlanBackend } from "./vxlan/index.js";

export * from "./types.js";

export function isBackendName(name: string): name is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(name);
}

export function createBackend(name: string, opts: BackendOptions = {}): Backend {
  switch (name) {
    case "vxlan":
      return new VxlanBackend(opts);
    case "host-gw":
      return new HostGwBackend(opts);
    case "vxlan-direct":
      return new VxlanDirectBackend(opts);
    case "bgp":
      return new BgpBackend(opts);
    default:
      throw new Error(`unknown backend "${name}": choose one of ${BACKEND_NAMES.join(", ")}`);
  }
}
