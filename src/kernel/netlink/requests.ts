// The rtnetlink requests weft sends, one builder each, mirroring the iproute2 commands the
// iproute kernel runs (same flags and defaults: table main, protocol boot, CREATE|EXCL for
// "add", CREATE|REPLACE for "replace"). Inputs must be validated before they get here.
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  IFA_ADDRESS,
  IFA_F_NODAD,
  IFA_FLAGS,
  IFA_LOCAL,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_GROUP,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  NDA_DST,
  NDA_LLADDR,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NUD_PERMANENT,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTM_DELLINK,
  RTM_DELROUTE,
  RTM_GETLINK,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTN_UNICAST,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
  VETH_INFO_PEER,
} from "./consts.js";
import {
  bytesAttr,
  encodeAttrs,
  ifaddrmsg,
  ifinfomsg,
  ipBytes,
  macBytes,
  ndmsg,
  nestAttr,
  rtmsg,
  strAttr,
  u32Attr,
} from "./message.js";
import type { Request } from "./socket.js";

export type Fam = 4 | 6;
const af = (f: Fam) => (f === 4 ? AF_INET : AF_INET6);
const up = { flags: IFF_UP, change: IFF_UP }; // change = UP only: leave every other flag as it is

export interface VethSpec {
  host: string;
  hostMac: string;
  peer: string;
  peerMac: string;
  mtu: number;
  /** fd of the namespace the peer is created in. */
  peerNsFd: number;
}

/**
 * ip link add HOST mtu M address MAC up type veth peer name PEER mtu M address MAC netns FD.
 * Only the host end comes up here: veth configures the peer before pairing it, so asking for the
 * peer to be up fails with ENOTCONN; the pod side sets it up with linkUp().
 */
export function newVeth(s: VethSpec): Request {
  const peer = Buffer.concat([
    ifinfomsg({}),
    encodeAttrs([
      strAttr(IFLA_IFNAME, s.peer),
      u32Attr(IFLA_MTU, s.mtu),
      bytesAttr(IFLA_ADDRESS, macBytes(s.peerMac)),
      u32Attr(IFLA_NET_NS_FD, s.peerNsFd),
    ]),
  ]);
  return {
    type: RTM_NEWLINK,
    flags: NLM_F_CREATE | NLM_F_EXCL,
    header: ifinfomsg(up),
    attrs: [
      strAttr(IFLA_IFNAME, s.host),
      u32Attr(IFLA_MTU, s.mtu),
      bytesAttr(IFLA_ADDRESS, macBytes(s.hostMac)),
      nestAttr(
        IFLA_LINKINFO,
        strAttr(IFLA_INFO_KIND, "veth"),
        nestAttr(IFLA_INFO_DATA, bytesAttr(VETH_INFO_PEER, peer)),
      ),
    ],
    what: `create veth ${s.host}/${s.peer}`,
  };
}

export function getLink(name: string): Request {
  return {
    type: RTM_GETLINK,
    header: ifinfomsg({ family: AF_UNSPEC }),
    attrs: [strAttr(IFLA_IFNAME, name)],
    what: `find interface ${name}`,
  };
}

export function getLinkByIndex(index: number, name: string): Request {
  return { type: RTM_GETLINK, header: ifinfomsg({ family: AF_UNSPEC, index }), what: `find interface ${name}` };
}

/** ip link set NAME group GROUP */
export function setGroup(name: string, group: number): Request {
  return {
    type: RTM_NEWLINK,
    header: ifinfomsg({}),
    attrs: [strAttr(IFLA_IFNAME, name), u32Attr(IFLA_GROUP, group)],
    what: `mark ${name} for deletion`,
  };
}

/** ip link del group GROUP: every link of the group in one go. */
export function delGroup(group: number, names: string): Request {
  return { type: RTM_DELLINK, header: ifinfomsg({}), attrs: [u32Attr(IFLA_GROUP, group)], what: `delete ${names}` };
}

/** ip link set dev IFINDEX up */
export function linkUp(index: number, name: string): Request {
  return { type: RTM_NEWLINK, header: ifinfomsg({ index, ...up }), what: `set ${name} up` };
}

/** ip link del NAME */
export function delLink(name: string): Request {
  return { type: RTM_DELLINK, header: ifinfomsg({}), attrs: [strAttr(IFLA_IFNAME, name)], what: `delete ${name}` };
}

/** ip addr add ADDR/PREFIX dev IFINDEX [nodad] */
export function addAddr(fam: Fam, addr: string, prefix: number, index: number, nodad: boolean, dev: string): Request {
  const a = ipBytes(addr);
  const flags = nodad ? IFA_F_NODAD : 0;
  return {
    type: RTM_NEWADDR,
    flags: NLM_F_CREATE | NLM_F_EXCL,
    header: ifaddrmsg({ family: af(fam), prefixlen: prefix, flags, scope: RT_SCOPE_UNIVERSE, index }),
    attrs: [bytesAttr(IFA_LOCAL, a), bytesAttr(IFA_ADDRESS, a), ...(flags ? [u32Attr(IFA_FLAGS, flags)] : [])],
    what: `add address ${addr}/${prefix} to ${dev}`,
  };
}

export interface RouteSpec {
  fam: Fam;
  dst: string;
  dstLen: number;
  oif: number;
  gateway?: string;
  onlink?: boolean;
  /** "scope link" (IPv4 device routes). */
  linkScope?: boolean;
  dev: string;
}

/** ip route add DST/LEN [via GW] dev IFINDEX [onlink] [scope link] */
export function addRoute(r: RouteSpec): Request {
  return {
    type: RTM_NEWROUTE,
    flags: NLM_F_CREATE | NLM_F_EXCL,
    header: rtmsg({
      family: af(r.fam),
      dstLen: r.dstLen,
      table: RT_TABLE_MAIN,
      protocol: RTPROT_BOOT,
      scope: r.linkScope ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE,
      type: RTN_UNICAST,
      flags: r.onlink ? RTNH_F_ONLINK : 0,
    }),
    attrs: [
      ...(r.dstLen > 0 ? [bytesAttr(RTA_DST, ipBytes(r.dst))] : []),
      ...(r.gateway ? [bytesAttr(RTA_GATEWAY, ipBytes(r.gateway))] : []),
      u32Attr(RTA_OIF, r.oif),
    ],
    what: `add route ${r.dst}/${r.dstLen}${r.gateway ? ` via ${r.gateway}` : ""} dev ${r.dev}`,
  };
}

/** ip route del DST/LEN dev IFINDEX (any scope, type and protocol, table main) */
export function delRoute(fam: Fam, dst: string, dstLen: number, oif: number, dev: string): Request {
  return {
    type: RTM_DELROUTE,
    header: rtmsg({ family: af(fam), dstLen, table: RT_TABLE_MAIN, scope: RT_SCOPE_NOWHERE }),
    attrs: [...(dstLen > 0 ? [bytesAttr(RTA_DST, ipBytes(dst))] : []), u32Attr(RTA_OIF, oif)],
    what: `delete route ${dst}/${dstLen} dev ${dev}`,
  };
}

/** ip neigh replace ADDR lladdr MAC dev IFINDEX nud permanent */
export function permanentNeigh(fam: Fam, addr: string, mac: string, index: number, dev: string): Request {
  return {
    type: RTM_NEWNEIGH,
    flags: NLM_F_CREATE | NLM_F_REPLACE,
    header: ndmsg({ family: af(fam), ifindex: index, state: NUD_PERMANENT, flags: 0, type: 0 }),
    attrs: [bytesAttr(NDA_DST, ipBytes(addr)), bytesAttr(NDA_LLADDR, macBytes(mac))],
    what: `set neighbour ${addr} lladdr ${mac} on ${dev}`,
  };
}
