// Creates or adopts the node's VTEP: an existing device with the right VNI, port, local address,
// underlay device and no learning is kept (only MAC, MTU, addresses, offload and up-state are
// corrected); anything else by that name is replaced.
import type { KernelContext } from "../../kernel/tracked.js";
import {
  addAddress,
  createVxlan,
  delAddress,
  deleteLink,
  ensureVxlanNotrack,
  getLink,
  listGlobalAddresses,
  setLinkMac,
  setLinkMtu,
  setLinkUp,
  setTxChecksumOffload,
  txChecksumOffload,
  type LinkState,
  type VxlanSpec,
} from "../../kernel/vxlan.js";
import { canonicalCidr, KERNEL_PREFIX } from "../../net/cidr.js";
import { canonicalIpOrThrow } from "../../net/ip.js";
import type { Change } from "../types.js";

export interface VtepWanted extends VxlanSpec {
  /** Address/prefix list for the device (the VTEP addresses, /32 and /128). */
  readonly addresses: readonly string[];
  /** true: force tx checksum offload off; false: force it on. */
  readonly disableTxChecksumOffload: boolean;
}

function compatible(l: LinkState, w: VtepWanted): boolean {
  const v = l.vxlan;
  return (
    !!v &&
    v.vni === w.vni &&
    v.port === w.port &&
    !v.learning &&
    v.group === null &&
    v.local !== null &&
    canonicalIpOrThrow(v.local) === canonicalIpOrThrow(w.local) &&
    v.dev === w.dev
  );
}

export async function ensureVtep(ctx: KernelContext, w: VtepWanted): Promise<Change[]> {
  const changes: Change[] = [];
  const link = (object: Change["object"], action: Change["action"], detail: string): void =>
    void changes.push({ action, object, detail });
  let l = await getLink(ctx, w.name);
  if (l && !compatible(l, w)) {
    await deleteLink(ctx, w.name);
    link("link", "delete", `${w.name} (${l.kind ?? "unknown kind"}, settings differ)`);
    l = null;
  }
  if (!l) {
    await createVxlan(ctx, w);
    link("link", "add", `${w.name} vxlan id ${w.vni} dstport ${w.port} local ${w.local} dev ${w.dev} nolearning`);
    l = { name: w.name, kind: "vxlan", mac: w.mac, mtu: w.mtu, up: false, vxlan: null };
  } else {
    if (l.mac !== w.mac) {
      await setLinkMac(ctx, w.name, w.mac);
      link("link", "replace", `${w.name} address ${w.mac}`);
    }
    if (l.mtu !== w.mtu) {
      await setLinkMtu(ctx, w.name, w.mtu);
      link("link", "replace", `${w.name} mtu ${w.mtu}`);
    }
  }

  const want = new Set(w.addresses.map((a) => canonicalCidr(a, KERNEL_PREFIX)));
  const have = (await listGlobalAddresses(ctx, w.name)).map((a) => canonicalCidr(a, KERNEL_PREFIX));
  for (const a of have)
    if (!want.has(a)) {
      await delAddress(ctx, w.name, a);
      link("address", "delete", `${a} dev ${w.name}`);
    }
  for (const a of want)
    if (!have.includes(a)) {
      await addAddress(ctx, w.name, a);
      link("address", "add", `${a} dev ${w.name}`);
    }

  const on = await txChecksumOffload(ctx, w.name);
  if (on !== null && on === w.disableTxChecksumOffload) {
    await setTxChecksumOffload(ctx, w.name, !w.disableTxChecksumOffload);
    link("offload", "replace", `${w.name} tx-checksum-ip-generic ${w.disableTxChecksumOffload ? "off" : "on"}`);
  }
  // The tunnel's outer UDP packets skip conntrack (kernel/vxlan.ts says why).
  if (await ensureVxlanNotrack(ctx, w.port))
    link("link", "replace", `${w.name} outer packets (udp ${w.port}) untracked`);
  if (!l.up) {
    await setLinkUp(ctx, w.name);
    link("link", "replace", `${w.name} up`);
  }
  return changes;
}
