// Names and addresses of everything a lab makes. One lab per machine: its id ("weft-lab") is the
// prefix of every namespace and the name of its directory under /run. Tests may pick another id
// (WEFT_LAB_ID) so they never touch a lab someone is using.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { netnsName } from "../kernel/validate.js";

export const DEFAULT_LAB_ID = "weft-lab";
export const MAX_NODES = 50;

/** The underlay subnet the nodes share (private to the lab's underlay namespace). */
export const UNDERLAY_V4_PREFIX = "10.250.0.";
export const UNDERLAY_V6_PREFIX = "fd00:250::";
export const CLUSTER_CIDR_V4 = "10.244.0.0/16";
export const CLUSTER_CIDR_V6 = "fd00:244::/48";

export class LabNames {
  constructor(
    readonly id: string,
    readonly dir: string,
  ) {
    if (!/^[a-z][a-z0-9-]{0,19}$/.test(id)) {
      throw new Error(`lab id "${id}": use 1-20 lower-case letters, digits and '-', starting with a letter`);
    }
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): LabNames {
    const id = env.WEFT_LAB_ID || DEFAULT_LAB_ID;
    return new LabNames(id, env.WEFT_LAB_DIR || join("/run", id));
  }

  get stateFile(): string {
    return join(this.dir, "state.json");
  }
  get underlayNetns(): string {
    return netnsName(`${this.id}-ul`);
  }
  /** With --racks: rack r's top-of-rack router. */
  torNetns(rack: number): string {
    if (!Number.isInteger(rack) || rack < 1 || rack > 9) throw new Error(`rack ${rack}: racks are 1..9`);
    return netnsName(`${this.id}-tor${rack}`);
  }
  /** With --racks: the "external" namespace (the fabric's router, a stand-in for the world). */
  get externalNetns(): string {
    return netnsName(`${this.id}-ext`);
  }
  nodeName(i: number): string {
    return `n${i}`;
  }
  nodeNetns(node: string): string {
    if (!/^n[1-9][0-9]?$/.test(node)) throw new Error(`"${node}" is not a lab node name (n1, n2, ...)`);
    return netnsName(`${this.id}-${node}`);
  }
  nodeDir(node: string): string {
    return join(this.dir, node);
  }
  /** Pod namespaces: readable when short enough, else a stable hash of NS/NAME. */
  podNetns(namespace: string, name: string): string {
    const readable = `${this.id}-p-${namespace}-${name}`;
    if (readable.length <= 60 && /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(readable)) return netnsName(readable);
    const h = createHash("sha256").update(`${namespace}/${name}`).digest("hex").slice(0, 16);
    return netnsName(`${this.id}-p-${h}`);
  }
  get podNetnsPrefix(): string {
    return `${this.id}-p-`;
  }
  podDir(): string {
    return join(this.dir, "pods");
  }
  /** The pod server's control socket: short names, unix socket paths are limited to 107 bytes. */
  podControlSocket(namespace: string, name: string): string {
    const h = createHash("sha256").update(`${namespace}/${name}`).digest("hex").slice(0, 16);
    return join(this.podDir(), `${h}.sock`);
  }
}

export { netnsPathOf } from "../kernel/netns.js";

/** The underlay bridge's own addresses: the nodes' default gateway. */
export const UNDERLAY_GATEWAY_V4 = `${UNDERLAY_V4_PREFIX}1`;
export const UNDERLAY_GATEWAY_V6 = `${UNDERLAY_V6_PREFIX}1`;

/** Underlay addresses of node i (1-based): 10.250.0.(10+i)/24 and fd00:250::(10+i)/64. */
export function underlayV4(i: number): string {
  return `${UNDERLAY_V4_PREFIX}${10 + i}`;
}
export function underlayV6(i: number): string {
  return `${UNDERLAY_V6_PREFIX}${10 + i}`;
}

/** Per-node pod CIDRs for the local-store fallback (the etcd mode leases them from the store). */
export function localPodCidrs(i: number, dualStack: boolean): string[] {
  const v4 = `10.244.${i}.0/24`;
  return dualStack ? [v4, `fd00:244:${i}::/64`] : [v4];
}

export function nodeIndex(node: string): number {
  const m = /^n([1-9][0-9]?)$/.exec(node);
  if (!m) throw new Error(`"${node}" is not a lab node name (n1, n2, ...)`);
  return Number(m[1]);
}
