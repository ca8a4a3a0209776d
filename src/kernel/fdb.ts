// Static forwarding entries on a VXLAN device: peer VTEP MAC -> peer underlay address.
// The *Argv builders validate and return the command, for writeBatch().
import { readJson, write, type KernelContext } from "./tracked.js";
import { ifname as vIfname, ip as vIp, mac as vMac } from "./validate.js";

export interface FdbEntry {
  readonly mac: string;
  readonly dst: string;
}

interface FdbJson {
  mac: string;
  dst?: string;
  state?: string;
  flags?: string[];
}

/** The device's permanent unicast entries that point at a remote VTEP. */
export async function listFdb(ctx: KernelContext, dev: string): Promise<FdbEntry[]> {
  const all = await readJson<FdbJson>(ctx, ["bridge", "-j", "fdb", "show", "dev", vIfname(dev)]);
  return all
    .filter((e) => e.dst !== undefined && e.state === "permanent" && e.mac !== "00:00:00:00:00:00")
    .map((e) => ({ mac: e.mac.toLowerCase(), dst: e.dst as string }));
}

export function replaceFdbArgv(dev: string, e: FdbEntry): string[] {
  return ["bridge", "fdb", "replace", vMac(e.mac), "dev", vIfname(dev), "dst", vIp(e.dst), "self", "permanent"];
}

export function delFdbArgv(dev: string, e: FdbEntry): string[] {
  return ["bridge", "fdb", "del", vMac(e.mac), "dev", vIfname(dev), "dst", vIp(e.dst), "self"];
}

export async function replaceFdb(ctx: KernelContext, dev: string, e: FdbEntry): Promise<void> {
  await write(ctx, replaceFdbArgv(dev, e));
}

export async function delFdb(ctx: KernelContext, dev: string, e: FdbEntry): Promise<void> {
  await write(ctx, delFdbArgv(dev, e));
}
