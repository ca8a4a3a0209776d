// The backends' writes of peer state (routes of their route protocol, permanent neighbour and FDB
// entries on a VTEP), sent over rtnetlink from the agent itself: one datagram per phase instead of
// an `ip -batch`/`bridge -batch` child process. When one node joins, every other node writes its
// entries at the same moment; on a small machine the process start-ups (fork of a ~100 MB agent,
// exec, exit) were most of the time a join took to reach all peers. Each write is still reported
// to ctx.onCommand as the iproute2 command it equals. A PeerWriteChannel in "iproute" mode (the
// agent's --kernel iproute) runs those commands instead. A netlink socket that cannot be opened is
// not hidden: the channel records the error (the agent logs it and reports it in `weft status`)
// and only then are the writes made with iproute2, so the node keeps its routes.
import { closeSync, openSync } from "node:fs";
import { delFdbArgv, replaceFdbArgv, type FdbEntry } from "./fdb.js";
import { delNeighArgv, replaceNeighArgv, type NeighEntry } from "./neigh.js";
import { delRouteArgv, replaceRouteArgv, type PeerRoute } from "./peer-route.js";
import { writeBatch, type KernelContext } from "./tracked.js";
import { InvalidKernelInput, netnsPath } from "./validate.js";
import {
  AF_INET,
  AF_INET6,
  NDA_DST,
  NDA_LLADDR,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NUD_PERMANENT,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTM_DELROUTE,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTN_UNICAST,
  RTNH_F_ONLINK,
} from "./netlink/consts.js";
import { errnoName, errnoText } from "./netlink/errors.js";
import { bytesAttr, ipBytes, macBytes, ndmsg, parseIfinfomsg, rtmsg, u32Attr } from "./netlink/message.js";
import { getLink } from "./netlink/requests.js";
import { NetlinkSocket, type Request } from "./netlink/socket.js";
import { cidrOrThrow } from "../net/cidr.js";
import { formatIp } from "../net/ip.js";

const RTM_DELNEIGH = 29;
const AF_BRIDGE = 7;
const NTF_SELF = 0x02;

export type PeerWrite =
  | { readonly kind: "route-replace"; readonly route: PeerRoute; readonly protocol: number }
  | { readonly kind: "route-del"; readonly dst: string; readonly protocol: number }
  | { readonly kind: "neigh-replace"; readonly dev: string; readonly entry: NeighEntry }
  | { readonly kind: "neigh-del"; readonly dev: string; readonly ip: string }
  | { readonly kind: "fdb-replace"; readonly dev: string; readonly entry: FdbEntry }
  | { readonly kind: "fdb-del"; readonly dev: string; readonly entry: FdbEntry };

/** The iproute2 command a write equals (validates its names and addresses). */
export function writeArgv(w: PeerWrite): string[] {
  switch (w.kind) {
    case "route-replace":
      return replaceRouteArgv(w.route, w.protocol);
    case "route-del":
      return delRouteArgv(w.dst, w.protocol);
    case "neigh-replace":
      return replaceNeighArgv(w.dev, w.entry);
    case "neigh-del":
      return delNeighArgv(w.dev, w.ip);
    case "fdb-replace":
      return replaceFdbArgv(w.dev, w.entry);
    case "fdb-del":
      return delFdbArgv(w.dev, w.entry);
  }
}

const fam = (addr: string): number => (addr.includes(":") ? AF_INET6 : AF_INET);

/** A route dst as netlink wants it; a bare address is a host route, host bits are an error (as for `ip route`). */
function splitCidr(cidr: string): { addr: string; len: number } {
  const c = cidrOrThrow(cidr, { bareAddress: true }, (m) => new InvalidKernelInput(m));
  return { addr: formatIp(c.family, c.base), len: c.prefix };
}

/** The netlink request of a write; `index` gives a device's ifindex. */
function request(w: PeerWrite, argv: readonly string[], index: (dev: string) => number): Request {
  const what = argv.join(" ");
  switch (w.kind) {
    case "route-replace": {
      const { addr, len } = splitCidr(w.route.dst);
      return {
        type: RTM_NEWROUTE,
        flags: NLM_F_CREATE | NLM_F_REPLACE,
        what,
        header: rtmsg({
          family: fam(addr),
          dstLen: len,
          table: RT_TABLE_MAIN,
          protocol: w.protocol,
          scope: RT_SCOPE_UNIVERSE,
          type: RTN_UNICAST,
          flags: w.route.onlink ? RTNH_F_ONLINK : 0,
        }),
        attrs: [
          bytesAttr(RTA_DST, ipBytes(addr)),
          ...(w.route.via ? [bytesAttr(RTA_GATEWAY, ipBytes(w.route.via))] : []),
          u32Attr(RTA_OIF, index(w.route.dev)),
        ],
      };
    }
    case "route-del": {
      const { addr, len } = splitCidr(w.dst);
      return {
        type: RTM_DELROUTE,
        what,
        header: rtmsg({
          family: fam(addr),
          dstLen: len,
          table: RT_TABLE_MAIN,
          protocol: w.protocol,
          scope: RT_SCOPE_NOWHERE,
        }),
        attrs: [bytesAttr(RTA_DST, ipBytes(addr))],
      };
    }
    case "neigh-replace":
      return {
        type: RTM_NEWNEIGH,
        flags: NLM_F_CREATE | NLM_F_REPLACE,
        what,
        header: ndmsg({ family: fam(w.entry.ip), ifindex: index(w.dev), state: NUD_PERMANENT, flags: 0, type: 0 }),
        attrs: [bytesAttr(NDA_DST, ipBytes(w.entry.ip)), bytesAttr(NDA_LLADDR, macBytes(w.entry.mac))],
      };
    case "neigh-del":
      return {
        type: RTM_DELNEIGH,
        what,
        header: ndmsg({ family: fam(w.ip), ifindex: index(w.dev), state: 0, flags: 0, type: 0 }),
        attrs: [bytesAttr(NDA_DST, ipBytes(w.ip))],
      };
    case "fdb-replace":
    case "fdb-del":
      // bridge fdb ... self [permanent]: the VXLAN device's own table, keyed by MAC and remote.
      return {
        type: w.kind === "fdb-replace" ? RTM_NEWNEIGH : RTM_DELNEIGH,
        flags: w.kind === "fdb-replace" ? NLM_F_CREATE | NLM_F_REPLACE : 0,
        what,
        header: ndmsg({
          family: AF_BRIDGE,
          ifindex: index(w.dev),
          state: w.kind === "fdb-replace" ? NUD_PERMANENT : 0,
          flags: NTF_SELF,
          type: 0,
        }),
        attrs: [bytesAttr(NDA_LLADDR, macBytes(w.entry.mac)), bytesAttr(NDA_DST, ipBytes(w.entry.dst))],
      };
  }
}

export type PeerWriteMode = "netlink" | "iproute";

/** The door peer writes take, injected through KernelContext.peerWrites, and how it went. */
export class PeerWriteChannel {
  /** Why the last attempt could not open a netlink socket; null after one that could. */
  netlinkError: string | null = null;

  constructor(
    readonly mode: PeerWriteMode,
    /** Called each time a netlink socket fails to open (the writes then go through iproute2). */
    private readonly onNetlinkError: (reason: string) => void = () => undefined,
  ) {}

  /** The door the last writes took. */
  get effective(): PeerWriteMode {
    return this.mode === "netlink" && this.netlinkError === null ? "netlink" : "iproute";
  }

  /** A netlink socket for `ctx`, or null (recorded and reported) when none can be opened. */
  open(ctx: KernelContext): NetlinkSocket | null {
    try {
      const sock = openSocket(ctx);
      this.netlinkError = null;
      return sock;
    } catch (e) {
      this.netlinkError = `cannot open a netlink socket for peer writes (${e instanceof Error ? e.message : String(e)}); writing them with iproute2`;
      this.onNetlinkError(this.netlinkError);
      return null;
    }
  }
}

/** Without an injected channel (tests, tools): netlink, failures reported on stderr once per process. */
let warned = false;
const DEFAULT_CHANNEL = new PeerWriteChannel("netlink", (reason) => {
  if (!warned) process.emitWarning(reason, "WeftPeerWrites");
  warned = true;
});

const devOf = (w: PeerWrite): string | null =>
  w.kind === "route-replace" ? w.route.dev : w.kind === "route-del" ? null : w.dev;

function openSocket(ctx: KernelContext): NetlinkSocket {
  if (ctx.netns === undefined) return NetlinkSocket.open("the agent's namespace");
  const own = openSync("/proc/thread-self/ns/net", "r");
  try {
    return NetlinkSocket.openPath(netnsPath(ctx.netns), own);
  } finally {
    closeSync(own);
  }
}

/**
 * Applies the writes in order; every write is attempted. The result maps the index of each failed
 * write to the kernel's reason.
 */
export async function applyPeerWrites(ctx: KernelContext, writes: readonly PeerWrite[]): Promise<Map<number, string>> {
  const failed = new Map<number, string>();
  if (writes.length === 0) return failed;
  const argvs = writes.map(writeArgv);
  const channel = ctx.peerWrites ?? DEFAULT_CHANNEL;
  const sock = channel.mode === "netlink" ? channel.open(ctx) : null;
  if (!sock) {
    // One child process per tool run, in order (a phase uses one tool).
    let i = 0;
    while (i < writes.length) {
      const tool = argvs[i][0] as "ip" | "bridge";
      let j = i;
      while (j < writes.length && argvs[j][0] === tool) j++;
      for (const [k, m] of await writeBatch(ctx, tool, argvs.slice(i, j))) failed.set(i + k, m);
      i = j;
    }
    return failed;
  }
  try {
    // Interface indexes, once per device.
    const devs = [...new Set(writes.map(devOf).filter((d): d is string => d !== null))];
    const idx = new Map<string, number>();
    const answers = devs.length ? sock.transact(devs.map((d) => getLink(d))) : [];
    devs.forEach((d, i) => {
      if (answers[i].errno === 0 && answers[i].messages[0])
        idx.set(d, parseIfinfomsg(answers[i].messages[0].payload).index);
    });
    const reqs: Request[] = [];
    const at: number[] = [];
    for (const [i, w] of writes.entries()) {
      ctx.onCommand?.(argvs[i], "write");
      const dev = devOf(w);
      if (dev !== null && !idx.has(dev)) {
        failed.set(i, `device ${dev} does not exist`);
        continue;
      }
      reqs.push(request(w, argvs[i], (d) => idx.get(d) as number));
      at.push(i);
    }
    sock.transact(reqs).forEach((a, k) => {
      if (a.errno !== 0)
        failed.set(at[k], `${errnoText(a.errno)} (${errnoName(a.errno)})${a.extMessage ? `: ${a.extMessage}` : ""}`);
    });
  } finally {
    sock.close();
  }
  return failed;
}
