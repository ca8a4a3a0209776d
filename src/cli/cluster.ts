// `weft cluster init`: writes the cluster settings (cluster CIDRs, backend, MTU override, node
// subnet sizes) into the store, once. Agents in cluster mode read them when they start.
import type { Command } from "commander";
import { isBackendName } from "../backends/index.js";
import { isStoreError } from "../store/errors.js";
import {
  BACKENDS,
  ENCRYPTION_TYPES,
  type ClusterSettings,
  type ClusterSettingsInput,
  type EncryptionSettings,
  type EncryptionType,
} from "../store/types.js";
import { UserError } from "./errors.js";
import { addStoreOptions, withStore, type StoreFlags } from "./store-flags.js";

interface InitFlags extends StoreFlags {
  clusterCidr: string;
  backend: string;
  mtu?: string;
  nodePrefixV4?: string;
  nodePrefixV6?: string;
  bgpAs?: string;
  encryption?: string;
  /** commander's negated --no-encryption-strict: false when given. */
  encryptionStrict: boolean;
  encryptionNodeToNode?: boolean;
  output?: string;
}

interface SetEncryptionFlags extends StoreFlags {
  encryptionStrict: boolean;
  nodeToNode?: boolean;
  output?: string;
}

function encryptionType(flag: string, v: string): EncryptionType {
  if (!(ENCRYPTION_TYPES as readonly string[]).includes(v))
    throw new UserError(`${flag} ${v}: choose one of ${ENCRYPTION_TYPES.join(", ")}`);
  return v as EncryptionType;
}

function int(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UserError(`${name} ${v}: must be an integer from ${min} to ${max}`);
  return n;
}

export function settingsInputFromFlags(o: InitFlags): ClusterSettingsInput {
  if (!isBackendName(o.backend)) throw new UserError(`--backend ${o.backend}: choose one of ${BACKENDS.join(", ")}`);
  const cidrs = o.clusterCidr
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (cidrs.length === 0) throw new UserError("--cluster-cidr: give one IPv4 and/or one IPv6 CIDR");
  const mtu = int("--mtu", o.mtu, 68, 65535);
  const v4 = int("--node-prefix-v4", o.nodePrefixV4, 1, 32);
  const v6 = int("--node-prefix-v6", o.nodePrefixV6, 1, 128);
  const as = int("--bgp-as", o.bgpAs, 1, 4294967295);
  if (as !== undefined && o.backend !== "bgp") throw new UserError(`--bgp-as applies only to --backend bgp`);
  const enc = o.encryption !== undefined ? encryptionType("--encryption", o.encryption) : undefined;
  if (enc === undefined && (o.encryptionStrict === false || o.encryptionNodeToNode))
    throw new UserError("--no-encryption-strict and --encryption-node-to-node apply only with --encryption");
  return {
    clusterCIDRs: cidrs,
    backend: o.backend,
    ...(mtu !== undefined ? { mtu } : {}),
    ...(v4 !== undefined || v6 !== undefined
      ? { nodeSubnetPrefix: { ...(v4 !== undefined ? { v4 } : {}), ...(v6 !== undefined ? { v6 } : {}) } }
      : {}),
    ...(as !== undefined ? { bgp: { asNumber: as } } : {}),
    ...(enc !== undefined
      ? { encryption: { type: enc, strict: o.encryptionStrict !== false, nodeToNode: o.encryptionNodeToNode === true } }
      : {}),
  };
}

export function describeSettings(s: ClusterSettings): string {
  const prefixes = s.clusterCIDRs.map((c) =>
    c.includes(":") ? `/${s.nodeSubnetPrefix.v6}` : `/${s.nodeSubnetPrefix.v4}`,
  );
  return `cluster CIDRs ${s.clusterCIDRs.join(", ")} (a ${prefixes.join(" / ")} per node), backend ${s.backend}, MTU ${s.mtu ?? "from each node's underlay"}, encryption ${describeEncryption(s.encryption)}`;
}

export function describeEncryption(e: EncryptionSettings): string {
  if (e.type === "none") return "none";
  return `${e.type} (${e.strict ? "strict: pod traffic that cannot be encrypted is dropped" : "not strict: may fall back to clear text"}${e.nodeToNode ? ", node-to-node traffic too" : ""})`;
}

export function registerCluster(program: Command): void {
  const cluster = program.command("cluster").description("cluster-wide settings in the store");
  addStoreOptions(
    cluster
      .command("init")
      .description("set the cluster CIDRs and backend (once; re-running with the same settings changes nothing)")
      .requiredOption(
        "--cluster-cidr <cidr[,cidr]>",
        "pod address space: one IPv4 and/or one IPv6 CIDR; each node gets a subnet of it",
      )
      .requiredOption("--backend <name>", `how pods reach other nodes: ${BACKENDS.join(", ")}`)
      .option("--mtu <n>", "pod MTU for every node (default: each node's underlay MTU minus the backend's overhead)")
      .option("--node-prefix-v4 <n>", "prefix length of each node's IPv4 pod subnet (default 24)")
      .option("--node-prefix-v6 <n>", "prefix length of each node's IPv6 pod subnet (default 64)")
      .option("--bgp-as <n>", "backend bgp: the cluster's AS number for the node-to-node iBGP mesh (default 64512)")
      .option("--encryption <type>", `encrypt pod traffic between nodes: ${ENCRYPTION_TYPES.join(", ")} (default none)`)
      .option("--no-encryption-strict", "with --encryption: let pod traffic that cannot be encrypted go out in clear")
      .option("--encryption-node-to-node", "with --encryption: encrypt node-to-node traffic too")
      .option("-o, --output <format>", "json: print the settings as stored"),
  ).action(async (o: InitFlags) => {
    if (o.output !== undefined && o.output !== "json") throw new UserError(`-o ${o.output}: only "json" is supported`);
    const input = settingsInputFromFlags(o);
    await withStore(o, async (store) => {
      let res;
      try {
        res = await store.initCluster(input);
      } catch (e) {
        if (isStoreError(e, "Invalid")) throw new UserError(e.message);
        if (isStoreError(e)) throw new UserError(e.message, 1);
        throw e;
      }
      if (o.output === "json")
        process.stdout.write(JSON.stringify({ created: res.created, settings: res.settings }) + "\n");
      else
        process.stdout.write(
          `${res.created ? "cluster initialized" : "cluster already initialized with these settings (unchanged)"} in ${store.description}: ${describeSettings(res.settings)}\n`,
        );
    });
  });
  addStoreOptions(
    cluster
      .command("set-encryption")
      .description(
        "change the encryption of pod traffic between nodes on a live cluster (agents follow within seconds)",
      )
      .argument("<type>", `${ENCRYPTION_TYPES.join(", ")}`)
      .option("--no-encryption-strict", "let pod traffic that cannot be encrypted go out in clear (default: drop it)")
      .option("--node-to-node", "encrypt node-to-node traffic too")
      .option("-o, --output <format>", "json: print the settings as stored"),
  ).action(async (type: string, o: SetEncryptionFlags) => {
    if (o.output !== undefined && o.output !== "json") throw new UserError(`-o ${o.output}: only "json" is supported`);
    const enc = encryptionType("set-encryption", type);
    await withStore(o, async (store) => {
      let res;
      try {
        res = await store.setEncryption({
          type: enc,
          strict: o.encryptionStrict !== false,
          nodeToNode: o.nodeToNode === true,
        });
      } catch (e) {
        if (isStoreError(e, "Invalid")) throw new UserError(e.message);
        if (isStoreError(e)) throw new UserError(e.message, 1);
        throw e;
      }
      if (o.output === "json")
        process.stdout.write(JSON.stringify({ changed: res.changed, settings: res.settings }) + "\n");
      else
        process.stdout.write(
          `${res.changed ? "encryption set" : "encryption unchanged"} in ${store.description}: ${describeEncryption(res.settings.encryption)}\n`,
        );
    });
  });
}
