// PodKernel over rtnetlink, spoken directly from TypeScript (koffi for the socket calls): the
// same kernel state as IprouteKernel (../iproute/kernel.ts) without an `ip` process per step. A pod
// costs five round trips to the kernel, each a single datagram carrying several requests.
//
// Use: `new NetlinkKernel()` on the main thread (sockets open on first use), close() at shutdown.
// Calls other than deleteHostLinks run synchronously (a wirePod is ~1.5 ms of kernel work, less
// than handing it to a thread would cost; only on kernels before 6.8 may it wait for a link to
// come up); deletions wait on a worker thread (see deleter.ts).
import { closeSync, openSync, writeFileSync } from "node:fs";
import { ensureSysctl, sysctlNetPath } from "../../nsfile.js";
import * as v from "../../validate.js";
import {
  type Family,
  GATEWAY_V4,
  GATEWAY_V6,
  type LinkInfo,
  type PodKernel,
  type PodView,
  type PodWiring,
  type RouteInfo,
} from "../types.js";
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  IF_OPER_UP,
  IFA_ADDRESS,
  IFA_LOCAL,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_MTU,
  IFLA_OPERSTATE,
  LOOPBACK_IFINDEX,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_TABLE,
  RTM_F_CLONED,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
} from "../../netlink/consts.js";
import { LinkDeleter } from "./deleter.js";
import { NetlinkError } from "../../netlink/errors.js";
import {
  cstr,
  ifaddrmsg,
  ifinfomsg,
  type InMessage,
  ipString,
  macString,
  parseAttrs,
  parseIfaddrmsg,
  parseIfinfomsg,
  parseRtmsg,
  rtmsg,
} from "../../netlink/message.js";
import {
  addAddr,
  addRoute,
  delRoute,
  type Fam,
  getLink,
  getLinkByIndex,
  linkUp,
  newVeth,
  permanentNeigh,
} from "../../netlink/requests.js";
import { type Answer, NetlinkSocket, type Request } from "../../netlink/socket.js";

const ENOENT = 2;
const EEXIST = 17;
const ENODEV = 19;
const ETIMEDOUT = 110;
const LINK_UP_TIMEOUT_MS = 2000;

interface Route {
  fam: Fam;
  dst: string;
  dstLen: number;
  table: number;
  oif?: number;
  gateway?: string;
  cloned: boolean;
}

function parseLink(m: InMessage): LinkInfo {
  const h = parseIfinfomsg(m.payload);
  const a = parseAttrs(m.payload, 16);
  const mac = a.get(IFLA_ADDRESS);
  return {
    name: cstr(a.get(IFLA_IFNAME) ?? Buffer.alloc(0)),
    ifindex: h.index,
    mtu: a.get(IFLA_MTU)?.readUInt32LE(0) ?? 0,
    mac: mac ? macString(mac) : "",
    up: (h.flags & IFF_UP) !== 0,
  };
}

function parseRoute(m: InMessage): Route {
  const h = parseRtmsg(m.payload);
  const a = parseAttrs(m.payload, 12);
  const fam: Fam = h.family === AF_INET ? 4 : 6;
  const dst = a.get(RTA_DST);
  const gw = a.get(RTA_GATEWAY);
  return {
    fam,
    dst: dst ? ipString(dst) : fam === 4 ? "0.0.0.0" : "::",
    dstLen: h.dstLen,
    table: a.get(RTA_TABLE)?.readUInt32LE(0) ?? h.table,
    ...(a.has(RTA_OIF) ? { oif: a.get(RTA_OIF)!.readUInt32LE(0) } : {}),
    ...(gw ? { gateway: ipString(gw) } : {}),
    cloned: (h.flags & RTM_F_CLONED) !== 0,
  };
}

/**
 * Whether a GETLINK answer says the link is operationally up. Carrier comes on inside the
 * request that sets the second veth end up, but the kernel applies it (operational state,
 * IFF_RUNNING, and the host end's transmit queue, which until then drops every packet) in its
 * link watcher, a work item that runs a little later, longer when rtnl is busy: an ADD that
 * returned then had a pod whose first packets vanished. A GETLINK of the link runs that pending
 * work at once (Linux 6.8+, "net: core: synchronize link-watch when carrier is queried"), so
 * wirePod asks for each end last and, on older kernels, waits.
 */
function operUp(a: Answer): boolean {
  const m = a.messages[0];
  if (a.errno || !m) return false;
  return parseAttrs(m.payload, 16).get(IFLA_OPERSTATE)?.readUInt8(0) === IF_OPER_UP;
}

/** The first failed answer as an error, naming the request it answered. */
function firstFailure(reqs: readonly Request[], answers: readonly Answer[], where: string): NetlinkError | undefined {
  const i = answers.findIndex((a) => a.errno !== 0);
  if (i < 0) return undefined;
  return new NetlinkError(reqs[i].what, answers[i].errno, `cannot ${reqs[i].what} in ${where}`, answers[i].extMessage);
}

export interface NetlinkKernelOptions {
  /** Where the agent runs, for messages (default "the agent's network namespace"). */
  hostName?: string;
}

export class NetlinkKernel implements PodKernel {
  private hostSock?: NetlinkSocket;
  private linkDeleter?: LinkDeleter;
  private ownNsFd = -1;
  private readonly hostName: string;

  constructor(opts: NetlinkKernelOptions = {}) {
    this.hostName = opts.hostName ?? "the agent's network namespace";
  }

  /** Sockets and the namespace fd are opened on first use; close() releases them. */
  close(): void {
    this.hostSock?.close();
    this.linkDeleter?.close();
    this.hostSock = this.linkDeleter = undefined;
    if (this.ownNsFd >= 0) closeSync(this.ownNsFd);
    this.ownNsFd = -1;
  }

  /** The host namespace's socket; a new one if the last closed itself after a failure. */
  private host(): NetlinkSocket {
    if (!this.hostSock?.isOpen) this.hostSock = NetlinkSocket.open(this.hostName);
    return this.hostSock;
  }

  /** fd of the main thread's own namespace: where it returns after making a pod's socket. */
  private ownNs(): number {
    if (this.ownNsFd < 0) this.ownNsFd = openSync("/proc/thread-self/ns/net", "r");
    return this.ownNsFd;
  }

  /** Opens a pod's namespace file; null when it does not exist. */
  private openNs(netns: string): number | null {
    try {
      return openSync(netns, "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  /** A socket in the pod namespace plus the open namespace fd, or null when the namespace is gone. */
  private podSocket(netns: string): { sock: NetlinkSocket; nsFd: number } | null {
    const nsFd = this.openNs(netns);
    if (nsFd === null) return null;
    try {
      return { sock: NetlinkSocket.openIn(nsFd, this.ownNs(), netns), nsFd };
    } catch (e) {
      closeSync(nsFd);
      throw e;
    }
  }

  async enableForwarding(): Promise<void> {
    // Only what is not already so: a node that forwards is left exactly as it was.
    ensureSysctl("/proc/sys/net/ipv4/ip_forward", "1");
    ensureSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1");
  }

  async underlayMtu(isOwnLink: (name: string) => boolean): Promise<number> {
    const links = await this.hostLinks();
    // Like `ip route show default`: IPv4, main table, the first default route with a device.
    const def = this.dumpRoutes(this.host(), 4).find(
      (r) => r.table === RT_TABLE_MAIN && r.dstLen === 0 && !r.cloned && r.oif !== undefined,
    );
    const viaDefault = links.find((l) => l.ifindex === def?.oif);
    if (viaDefault) return viaDefault.mtu;
    const candidates = links.filter((l) => l.name !== "lo" && !isOwnLink(l.name)).map((l) => l.mtu);
    return candidates.length ? Math.max(...candidates) : 1500;
  }

  async wirePod(w: PodWiring): Promise<{ defaultRoutes: Family[] }> {
    const hostIf = v.ifname(w.hostIf);
    const podIf = v.ifname(w.podIf);
    const netns = v.netnsPath(w.netns);
    const hostMac = v.mac(w.hostMac);
    const podMac = v.mac(w.podMac);
    const mtu = Math.trunc(w.mtu);
    if (!(mtu >= 68 && mtu <= 65535)) throw new v.InvalidKernelInput(`MTU ${w.mtu} is outside 68-65535`);
    const addrs = w.addresses.map((a) => {
      const max = a.family === 4 ? 32 : 128;
      if (!(Number.isInteger(a.prefix) && a.prefix >= 0 && a.prefix <= max))
        throw new v.InvalidKernelInput(`prefix length ${a.prefix} is not valid for ${a.address}`);
      return { fam: a.family as Fam, ip: v.ip(a.address), prefix: a.prefix };
    });
    const extra = w.extraRoutes.map((r) => {
      const [ip, len] = v.cidr(r.dst).split("/");
      return { fam: r.family as Fam, ip, len: Number(len), text: r.dst };
    });
    const has4 = addrs.some((a) => a.fam === 4);
    const has6 = addrs.some((a) => a.fam === 6);

    const pod = this.podSocket(netns);
    if (!pod) throw new NetlinkError(`open ${netns}`, ENOENT, `network namespace ${netns} does not exist`);
    try {
      const host = this.host();
      // 1. The veth pair, its peer made straight in the pod namespace, the host end up; and the
      //    host end's ifindex (answered after the creation in the same datagram).
      const create = newVeth({ host: hostIf, hostMac, peer: podIf, peerMac: podMac, mtu, peerNsFd: pod.nsFd });
      const [made, hostLink] = host.transact([create, getLink(hostIf)]);
      if (made.errno) throw this.createError(made, create.what, hostIf, podIf, netns, pod.sock);
      const hostIdx = parseLink(hostLink.messages[0]).ifindex;
      const [podLink] = pod.sock.transact([getLink(podIf)]);
      if (podLink.errno)
        throw new NetlinkError(`find ${podIf}`, podLink.errno, `the new interface ${podIf} is missing from ${netns}`);
      const podIdx = parseLink(podLink.messages[0]).ifindex;

      // 2. Host side: gateway address, a route and a permanent neighbour per pod address.
      //    (Before the link has carrier, as with iproute2: the host end's own link-local address
      //    then comes after fe80::1, which keeps the two kernels' address lists identical.)
      const h: Request[] = [];
      if (has6) h.push(addAddr(6, GATEWAY_V6, 64, hostIdx, true, hostIf));
      for (const a of addrs) {
        h.push(
          addRoute({
            fam: a.fam,
            dst: a.ip,
            dstLen: a.fam === 4 ? 32 : 128,
            oif: hostIdx,
            linkScope: a.fam === 4,
            dev: hostIf,
          }),
        );
        // Known MAC, so no neighbour discovery is needed towards the pod.
        h.push(permanentNeigh(a.fam, a.ip, podMac, hostIdx, hostIf));
      }
      const hostErr = firstFailure(h, host.transact(h), this.hostName);
      if (hostErr) throw hostErr;
      if (has4) writeFileSync(sysctlNetPath(`ipv4/conf/${hostIf}/proxy_arp`), "1");

      // 3. Pod side. The pod end comes up here, which gives both ends carrier; a GETLINK of it,
      //    last in the datagram, has the kernel finish that change at once (see operUp).
      const p: Request[] = [linkUp(LOOPBACK_IFINDEX, "lo"), linkUp(podIdx, podIf)];
      for (const a of addrs) p.push(addAddr(a.fam, a.ip, a.prefix, podIdx, a.fam === 6, podIf));
      const defaults = new Map<number, Family>(); // request index -> family of its default route
      if (has4) {
        // A permanent neighbour for the gateway: the pod reaches it even when the host has no
        // route to 169.254.1.1 (proxy_arp alone answers only for addresses the host can route).
        p.push(permanentNeigh(4, GATEWAY_V4, hostMac, podIdx, podIf));
        defaults.set(p.length, 4);
        p.push(
          addRoute({ fam: 4, dst: "0.0.0.0", dstLen: 0, gateway: GATEWAY_V4, onlink: true, oif: podIdx, dev: podIf }),
        );
      }
      if (has6) {
        p.push(permanentNeigh(6, GATEWAY_V6, hostMac, podIdx, podIf));
        defaults.set(p.length, 6);
        p.push(addRoute({ fam: 6, dst: "::", dstLen: 0, gateway: GATEWAY_V6, oif: podIdx, dev: podIf }));
      }
      for (const r of extra) {
        p.push(
          addRoute({
            fam: r.fam,
            dst: r.ip,
            dstLen: r.len,
            gateway: r.fam === 4 ? GATEWAY_V4 : GATEWAY_V6,
            onlink: r.fam === 4,
            oif: podIdx,
            dev: podIf,
          }),
        );
      }
      p.push(getLinkByIndex(podIdx, podIf));
      // The kernel answers every request; an existing default route (the pod's other interface
      // has one) is left alone and reported by omission, anything else fails the whole ADD.
      const answers = pod.sock.transact(p);
      const set = new Set(defaults.values());
      answers.forEach((a, i) => {
        if (a.errno === EEXIST && defaults.has(i)) set.delete(defaults.get(i)!);
      });
      const podErr = firstFailure(
        p,
        answers.map((a, i) => (a.errno === EEXIST && defaults.has(i) ? { ...a, errno: 0 } : a)),
        netns,
      );
      if (podErr) throw podErr;

      // 4. The same for the host end, which has had carrier since step 3. Only then is the pod
      //    usable: both ends pass traffic.
      const [hostUp] = host.transact([getLinkByIndex(hostIdx, hostIf)]);
      if (!operUp(answers[answers.length - 1])) await this.waitOperUp(pod.sock, podIdx, podIf, netns);
      if (!operUp(hostUp)) await this.waitOperUp(host, hostIdx, hostIf, this.hostName);
      return { defaultRoutes: [...set] };
    } finally {
      pod.sock.close();
      closeSync(pod.nsFd);
    }
  }

  /**
   * For kernels that do not finish a link change on GETLINK (before 6.8): asks again until the
   * kernel's link watcher has brought the link up, within LINK_UP_TIMEOUT_MS.
   */
  private async waitOperUp(sock: NetlinkSocket, index: number, name: string, where: string): Promise<void> {
    const deadline = performance.now() + LINK_UP_TIMEOUT_MS;
    for (;;) {
      await new Promise((r) => setTimeout(r, 1));
      const [a] = sock.transact([getLinkByIndex(index, name)]);
      if (a.errno)
        throw new NetlinkError(
          `find ${name}`,
          a.errno,
          `interface ${name} in ${where} went away while coming up`,
          a.extMessage,
        );
      if (operUp(a)) return;
      if (performance.now() > deadline) {
        throw new NetlinkError(
          `wait for ${name} to come up`,
          ETIMEDOUT,
          `interface ${name} in ${where} has no carrier ${LINK_UP_TIMEOUT_MS} ms after its peer came up`,
        );
      }
    }
  }

  /** Says which name clashed: the host end here, or the pod end in the pod namespace. */
  private createError(
    a: Answer,
    what: string,
    hostIf: string,
    podIf: string,
    netns: string,
    pod: NetlinkSocket,
  ): NetlinkError {
    if (a.errno === EEXIST) {
      if (pod.transact([getLink(podIf)])[0].errno === 0) {
        return new NetlinkError(what, a.errno, `interface ${podIf} already exists in ${netns}`, a.extMessage);
      }
      return new NetlinkError(
        what,
        a.errno,
        `host interface ${hostIf} already exists in ${this.hostName}`,
        a.extMessage,
      );
    }
    return new NetlinkError(what, a.errno, `cannot ${what} (peer in ${netns})`, a.extMessage);
  }

  async deleteHostLinks(names: string[]): Promise<void> {
    const todo = [...new Set(names.map((n) => v.ifname(n)))];
    if (todo.length === 0) return;
    // Already gone is fine (DEL is idempotent); the deleter answers as soon as a link is unlisted.
    const results = await Promise.allSettled(todo.map((n) => this.deleter().delete(n)));
    const failed = results.flatMap((r, i) => (r.status === "rejected" ? [{ n: todo[i], e: r.reason as unknown }] : []));
    if (failed.length === 0) return;
    const first = failed[0].e;
    if (failed.length === 1 && first instanceof Error) throw first;
    throw new NetlinkError(
      `delete ${failed.map((f) => f.n).join(", ")}`,
      first instanceof NetlinkError ? first.errno : 5,
      `could not delete ${failed.map((f) => f.n).join(", ")}`,
      first instanceof NetlinkError ? first.kernelMessage : String(first),
    );
  }

  private deleter(): LinkDeleter {
    return (this.linkDeleter ??= new LinkDeleter(
      () => this.host(),
      (groups) => NetlinkSocket.open(this.hostName, groups),
      this.hostName,
    ));
  }

  async hostLinks(): Promise<LinkInfo[]> {
    return this.dumpLinks(this.host());
  }

  private dumpLinks(s: NetlinkSocket): LinkInfo[] {
    return s
      .dump(RTM_GETLINK, ifinfomsg({ family: AF_UNSPEC }), "list interfaces")
      .filter((m) => m.type === RTM_NEWLINK)
      .map(parseLink);
  }

  private dumpRoutes(s: NetlinkSocket, fam: Fam): Route[] {
    return s
      .dump(RTM_GETROUTE, rtmsg({ family: fam === 4 ? AF_INET : AF_INET6 }), `list IPv${fam} routes`)
      .filter((m) => m.type === RTM_NEWROUTE)
      .map(parseRoute);
  }

  /** Main-table routes as `ip route show` lists them. */
  private mainRoutes(s: NetlinkSocket, names: Map<number, string>, oif?: number): RouteInfo[] {
    const out: RouteInfo[] = [];
    for (const fam of [4, 6] as const) {
      for (const r of this.dumpRoutes(s, fam)) {
        if (r.table !== RT_TABLE_MAIN || r.cloned || (oif !== undefined && r.oif !== oif)) continue;
        out.push({
          dst: `${r.dst}/${r.dstLen}`,
          dev: r.oif !== undefined ? (names.get(r.oif) ?? "") : "",
          ...(r.gateway ? { gateway: r.gateway } : {}),
        });
      }
    }
    return out;
  }

  async hostRoutes(): Promise<RouteInfo[]> {
    const s = this.host();
    const names = new Map(this.dumpLinks(s).map((l) => [l.ifindex, l.name]));
    return this.mainRoutes(s, names);
  }

  async deleteHostRoute(r: RouteInfo): Promise<void> {
    const [ip, len] = v.cidr(r.dst).split("/");
    const dev = v.ifname(r.dev);
    const s = this.host();
    const [link] = s.transact([getLink(dev)]);
    if (link.errno)
      throw new NetlinkError(
        `find ${dev}`,
        link.errno,
        `cannot delete route ${r.dst}: no interface ${dev} in ${this.hostName}`,
      );
    const req = delRoute(ip.includes(":") ? 6 : 4, ip, Number(len), parseLink(link.messages[0]).ifindex, dev);
    const err = firstFailure([req], s.transact([req]), this.hostName);
    if (err) throw err;
  }

  async inspectPod(netns: string, ifname: string): Promise<PodView | null> {
    const ns = v.netnsPath(netns);
    const dev = v.ifname(ifname);
    const pod = this.podSocket(ns);
    if (!pod) return null;
    try {
      const [l] = pod.sock.transact([getLink(dev)]);
      if (l.errno === ENODEV) return null;
      if (l.errno)
        throw new NetlinkError(`find ${dev}`, l.errno, `cannot read interface ${dev} in ${ns}`, l.extMessage);
      const link = parseLink(l.messages[0]);
      const addresses: string[] = [];
      for (const m of pod.sock.dump(
        RTM_GETADDR,
        ifaddrmsg({ family: AF_UNSPEC, prefixlen: 0, flags: 0, scope: 0, index: 0 }),
        "list addresses",
      )) {
        if (m.type !== RTM_NEWADDR) continue;
        const h = parseIfaddrmsg(m.payload);
        if (
          h.index !== link.ifindex ||
          h.scope !== RT_SCOPE_UNIVERSE ||
          (h.family !== AF_INET && h.family !== AF_INET6)
        )
          continue;
        const a = parseAttrs(m.payload, 8);
        const addr = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
        if (addr) addresses.push(`${ipString(addr)}/${h.prefixlen}`);
      }
      const routes = this.mainRoutes(pod.sock, new Map([[link.ifindex, dev]]), link.ifindex);
      return { link, addresses, routes };
    } finally {
      pod.sock.close();
      closeSync(pod.nsFd);
    }
  }

  async linkExistsIn(netns: string, ifname: string): Promise<boolean> {
    const ns = v.netnsPath(netns);
    const dev = v.ifname(ifname);
    const pod = this.podSocket(ns);
    if (!pod) return false;
    try {
      const [l] = pod.sock.transact([getLink(dev)]);
      if (l.errno && l.errno !== ENODEV)
        throw new NetlinkError(`find ${dev}`, l.errno, `cannot read interface ${dev} in ${ns}`, l.extMessage);
      return l.errno === 0;
    } finally {
      pod.sock.close();
      closeSync(pod.nsFd);
    }
  }
}
