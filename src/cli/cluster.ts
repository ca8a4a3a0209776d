// `weft cluster init`: writes the cluster settings (cluster CIDRs, backend, MTU override, node
// subnet sizes) into the store, once. Agents in cluster mode read them when they start.
import type { Command } from "commander";
import { isBackendName } from "../backends/index.js";
import { isStoreError } from "../store/errors.js";
import { BACKENDS, type ClusterSettings, type ClusterSettingsInput } from "../store/types.js";
import { UserError } from "./errors.js";
import { addStoreOptions, withStore, type StoreFlags } from "./store-flags.js";

interface InitFlags extends StoreFlags {
  clusterCidr: string;
  backend: string;
  mtu?: string;
  nodePrefixV4?: string;
  nodePrefixV6?: string;
  bgpAs?: string;
  output?: string;
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
  return {
    clusterCIDRs: cidrs,
    backend: o.backend,
    ...(mtu !== undefined ? { mtu } : {}),
    ...(v4 !== undefined || v6 !== undefined
      ? { nodeSubnetPrefix: { ...(v4 !== undefined ? { v4 } : {}), ...(v6 !== undefined ? { v6 } : {}) } }
      : {}),
    ...(as !== undefined ? { bgp: { asNumber: as } } : {}),
  };
}

export function describeSettings(s: ClusterSettings): string {
  const prefixes = s.clusterCIDRs.map((c) =>
    c.includes(":") ? `/${s.nodeSubnetPrefix.v6}` : `/${s.nodeSubnetPrefix.v4}`,
  );
  return `cluster CIDRs ${s.clusterCIDRs.join(", ")} (a ${prefixes.join(" / ")} per node), backend ${s.backend}, MTU ${s.mtu ?? "from each node's underlay"}`;
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
}
