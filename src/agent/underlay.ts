// The node's underlay (host) addresses for its registration: one per family, from --underlay-address
// or found in the agent's namespace: the address on the default route's device, else the first
// global address on an interface weft did not make.
import type { PodKernel } from "../kernel/pod/types.js";
import { listAddresses } from "../kernel/underlay.js";
import { canonicalIp, formatIp, parseIp } from "../net/ip.js";

/** Interfaces weft makes itself: pod host ends (wf + hex) and backend devices (weft.<vni>). */
export const WEFT_LINK = /^(wf[0-9a-f]{11}|weft\..*)$/;

export class UnderlayError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnderlayError";
  }
}

/** Validates --underlay-address values: IPs, at most one per family. */
export function parseUnderlayAddresses(text: string): string[] {
  const out: string[] = [];
  for (const part of text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const a = parseIp(part);
    if (!a) throw new UnderlayError(`--underlay-address: "${part}" is not an IP address`);
    if (out.some((o) => parseIp(o)?.family === a.family))
      throw new UnderlayError(`--underlay-address: more than one IPv${a.family} address`);
    out.push(formatIp(a.family, a.value));
  }
  if (out.length === 0) throw new UnderlayError("--underlay-address is empty: give IP[,IP]");
  return out;
}

export async function detectUnderlay(kernel: PodKernel): Promise<string[]> {
  const [addrs, routes] = await Promise.all([listAddresses({}), kernel.hostRoutes()]);
  const global = addrs.filter((a) => a.scope === "global" && a.dev !== "lo" && !WEFT_LINK.test(a.dev));
  const out: string[] = [];
  for (const fam of [4, 6] as const) {
    const def = routes.find((r) => r.dst === (fam === 4 ? "0.0.0.0/0" : "::/0") && r.dev && !WEFT_LINK.test(r.dev));
    const pick =
      (def && global.find((a) => a.family === fam && a.dev === def.dev)) ?? global.find((a) => a.family === fam);
    if (pick) out.push(canonicalIp(pick.address) ?? pick.address);
  }
  return out;
}
