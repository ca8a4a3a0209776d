// Text form of IP addresses held as numbers: the one place that writes an address the way
// iproute2 and Kubernetes print it (RFC 5952 for IPv6), shared by IPAM, stores, backends, policy.

export type IpFamily = 4 | 6;

/** An address as text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as "::"). */
export function formatIpValue(family: IpFamily, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => ((value >> s) & 0xffn).toString()).join(".");
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  // The longest run (of 2 or more) of zero groups becomes "::", the first one on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}
