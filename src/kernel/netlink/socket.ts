// A NETLINK_ROUTE socket: requests go out together in one datagram (the kernel handles each in
// turn and answers each, like `ip -force -batch`), answers are matched to requests by sequence
// number. All I/O is non-blocking: rtnetlink handles a request inside the send() call, so its
// answer is queued by the time send() returns, and dump parts are produced inside recv().
//
// That holds only while the answers fit the socket's receive buffer: an answer that does not is
// dropped, recv() reports ENOBUFS once, and the socket then drops every answer (even to later
// requests) until its queue is empty. So transact() sends as many requests per datagram as the
// buffer can surely hold the answers to, and a socket whose answers got out of step closes
// itself (its owner opens a new one) instead of handing later callers someone else's answers.
import { closeSync, openSync } from "node:fs";
import {
  AF_NETLINK,
  CLONE_NEWNET,
  MSG_DONTWAIT,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  RTM_BASE,
  SO_RCVBUF,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./consts.js";
import { NetlinkError } from "./errors.js";
import { type Attr, encodeMessage, type InMessage, parseError, parseMessages } from "./message.js";
import { libc } from "./libc.js";

const MSG_TRUNC = 0x20;
const EAGAIN = 11;
const ENOBUFS = 105;
/** Asked for; the kernel caps it at net.core.rmem_max (and doubles it). What we got is read back. */
const WANT_RCVBUF = 1 << 20;
/**
 * What one answer may take of the receive buffer (the kernel counts each queued message at its
 * allocated size, skb overhead included). A GET's answer is a whole object: a veth's RTM_NEWLINK
 * is ~1.5 KiB of attributes in an skb of ~4 KiB, so 8 KiB is room to spare; plus its ACK. An ACK
 * alone (NETLINK_CAP_ACK, maybe an extended-ack text) is well under 2 KiB.
 */
const ACK_COST = 2048;
const GET_COST = 8192 + ACK_COST;
/** rtnetlink message types come in fours from RTM_BASE: NEW, DEL, GET, SET. */
const isGet = (type: number) => type >= RTM_BASE && (type - RTM_BASE) % 4 === 2;
/**
 * One receive buffer for every socket: recv() only ever runs synchronously on the main thread
 * (transactAsync() sends from a worker but collects on the main thread), and each datagram is
 * copied out before the next recv().
 */
const rbuf = Buffer.allocUnsafe(256 * 1024);

export interface Request {
  type: number;
  /** NLM_F_REQUEST and NLM_F_ACK are always added. */
  flags?: number;
  header: Buffer;
  attrs?: readonly Attr[];
  /** For error messages: "create veth wf0123/eth0". */
  what: string;
}

export interface Answer {
  /** 0, or the positive errno the kernel answered with. */
  errno: number;
  extMessage?: string;
  /** Messages the kernel sent before its ACK (e.g. the RTM_NEWLINK a GETLINK asked for). */
  messages: InMessage[];
}

/** Ends the process: a main thread left in a pod's namespace would wire the next pod wrongly. */
function fatal(msg: string): never {
  process.stderr.write(`weft netlink: ${msg}; exiting\n`);
  process.abort();
}

export class NetlinkSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private closed = false;
  /** Bytes of answers one datagram of requests may cause (half the receive buffer: a margin). */
  private budget = 0;

  private constructor(
    private readonly fd: number,
    readonly where: string,
  ) {}

  /** A socket in the calling thread's own network namespace. */
  /** groups: multicast groups to listen to (RTMGRP_* bits), for a monitor socket. */
  static open(where: string, groups = 0): NetlinkSocket {
    const c = libc();
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw new NetlinkError("open a netlink socket", c.errno(), `cannot open a netlink socket in ${where}`);
    const s = new NetlinkSocket(fd, where);
    try {
      s.setup(groups);
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  /**
   * A socket in another network namespace, given an open fd of it. A netlink socket belongs to
   * the namespace it was created in, for good, so the main thread steps into the namespace only
   * for socket() and straight back out (ownNsFd is the fd of its own namespace).
   *
   * Why this is safe in Node: setns() changes the namespace of the calling thread only. This runs
   * synchronously on the main thread, so no JavaScript, callback or other call of ours runs on it
   * in between; libuv's pool threads and koffi's worker threads keep their namespace (they never
   * enter another one), so file system, DNS or async netlink work going on there is unaffected.
   */
  static openIn(nsFd: number, ownNsFd: number, where: string): NetlinkSocket {
    const c = libc();
    if (c.setns(nsFd, CLONE_NEWNET) !== 0) {
      throw new NetlinkError(`enter ${where}`, c.errno(), `cannot enter the network namespace ${where}`);
    }
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    const err = c.errno();
    if (c.setns(ownNsFd, CLONE_NEWNET) !== 0)
      fatal(`cannot return to the agent's own network namespace (errno ${c.errno()})`);
    if (fd < 0) throw new NetlinkError("open a netlink socket", err, `cannot open a netlink socket in ${where}`);
    const s = new NetlinkSocket(fd, where);
    try {
      s.setup();
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  /** Opens `path` (a netns file), makes a socket there, closes the file. */
  static openPath(path: string, ownNsFd: number): NetlinkSocket {
    const nsFd = openSync(path, "r");
    try {
      return NetlinkSocket.openIn(nsFd, ownNsFd, path);
    } finally {
      closeSync(nsFd);
    }
  }

  private setup(groups = 0): void {
    const c = libc();
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    // Extended acks: the kernel's own words on why it refused. Capped acks: no echo of the request.
    c.setsockopt(this.fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
    c.setsockopt(this.fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
    const sa = Buffer.alloc(12); // sockaddr_nl { family, pad, pid 0 (kernel picks), groups }
    sa.writeUInt16LE(AF_NETLINK, 0);
    sa.writeUInt32LE(groups, 8);
    if (c.bind(this.fd, sa, sa.length) !== 0)
      throw new NetlinkError("bind a netlink socket", c.errno(), `cannot bind a netlink socket in ${this.where}`);
    // A larger buffer means fewer datagrams for a big batch; how large it is, is read back.
    const want = Buffer.alloc(4);
    want.writeInt32LE(WANT_RCVBUF);
    c.setsockopt(this.fd, SOL_SOCKET, SO_RCVBUF, want, 4);
    const got = Buffer.alloc(4);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(4);
    const rcvbuf = c.getsockopt(this.fd, SOL_SOCKET, SO_RCVBUF, got, len) === 0 ? got.readInt32LE(0) : 0;
    // Never below one request's worth: a single GET always fits any real buffer (>= 2 KiB each way).
    this.budget = Math.max(GET_COST, Math.floor((rcvbuf > 0 ? rcvbuf : 212992) / 2));
  }

  /** False once closed, also when it closed itself after losing track of its answers. */
  get isOpen(): boolean {
    return !this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc().close(this.fd);
  }

  private encode(reqs: readonly Request[]): { buf: Buffer; seqs: number[] } {
    if (this.closed) throw new Error(`netlink socket for ${this.where} is closed`);
    const seqs: number[] = [];
    const parts = reqs.map((r) => {
      this.seq = (this.seq + 1) >>> 0 || 1;
      seqs.push(this.seq);
      return encodeMessage({
        type: r.type,
        flags: NLM_F_REQUEST | NLM_F_ACK | (r.flags ?? 0),
        seq: this.seq,
        header: r.header,
        attrs: r.attrs ?? [],
      });
    });
    return { buf: Buffer.concat(parts), seqs };
  }

  /**
   * Sends the requests, as few datagrams as the receive buffer allows (the kernel handles them
   * in order either way), and returns one answer per request, in order.
   */
  transact(reqs: readonly Request[]): Answer[] {
    const out: Answer[] = [];
    for (const chunk of this.chunks(reqs)) {
      const { buf, seqs } = this.encode(chunk);
      const c = libc();
      if (c.send(this.fd, buf, buf.length, 0) < 0)
        throw new NetlinkError(chunk[0].what, c.errno(), `cannot send to the kernel (${this.where})`);
      out.push(...this.collect(chunk, seqs));
    }
    return out;
  }

  /** Consecutive runs of requests whose answers together fit the budget. */
  private chunks(reqs: readonly Request[]): Request[][] {
    const out: Request[][] = [];
    let cur: Request[] = [];
    let used = 0;
    for (const r of reqs) {
      const cost = isGet(r.type) ? GET_COST : ACK_COST;
      if (cur.length && used + cost > this.budget) {
        out.push(cur);
        cur = [];
        used = 0;
      }
      cur.push(r);
      used += cost;
    }
    if (cur.length) out.push(cur);
    return out;
  }

  /**
   * Like transact(), but send() runs on a koffi worker thread, so requests the kernel is slow to
   * handle (deleting links waits for the network stack to let go of them) do not hold up the
   * event loop. One at a time per socket: answers of overlapping calls would interleave.
   */
  async transactAsync(reqs: readonly Request[]): Promise<Answer[]> {
    if (reqs.length === 0) return [];
    if (this.chunks(reqs).length > 1)
      throw new Error(`${reqs.length} requests are too many for one asynchronous datagram (${this.where})`);
    const { buf, seqs } = this.encode(reqs);
    const n = await libc().sendAsync(this.fd, buf, buf.length, 0);
    // errno is the worker thread's, out of reach here; a failed send is rare (ENOBUFS, EPERM).
    if (n < 0) throw new NetlinkError(reqs[0].what, 5 /* EIO */, `cannot send to the kernel (${this.where})`);
    return this.collect(reqs, seqs);
  }

  /**
   * What a monitor socket has received so far, without waiting: the messages, or "overrun" when
   * the kernel dropped some because the socket's queue was full.
   */
  drain(): InMessage[] | "overrun" {
    const c = libc();
    const out: InMessage[] = [];
    for (;;) {
      const n = c.recv(this.fd, rbuf, rbuf.length, MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        const e = c.errno();
        if (e === EAGAIN) return out;
        if (e === ENOBUFS) return "overrun";
        throw new NetlinkError("read link events", e, `cannot read link events in ${this.where}`);
      }
      if (n > rbuf.length) return "overrun";
      out.push(...parseMessages(Buffer.from(rbuf.subarray(0, n))));
    }
  }

  /**
   * The next datagram of answers. Any failure here means answers were lost or are still queued
   * out of step, so the socket closes itself: requests sent on it later would be answered wrongly
   * or not at all. (EAGAIN cannot happen while answers fit the buffer: they are queued by send().)
   */
  private recvOnce(what: string): InMessage[] {
    const c = libc();
    const n = c.recv(this.fd, rbuf, rbuf.length, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      const e = c.errno();
      this.close();
      if (e === ENOBUFS)
        throw new NetlinkError(
          what,
          e,
          `the kernel's answers overflowed the receive buffer in ${this.where}; some requests may have been applied`,
        );
      throw new NetlinkError(what, e, `no answer from the kernel (${this.where})`);
    }
    if (n > rbuf.length) {
      this.close();
      throw new Error(`netlink answer of ${n} bytes does not fit ${rbuf.length} (${this.where})`);
    }
    // Copy: the receive buffer is reused by the next recv.
    return parseMessages(Buffer.from(rbuf.subarray(0, n)));
  }

  private collect(reqs: readonly Request[], seqs: number[]): Answer[] {
    const bySeq = new Map<number, Answer>();
    const pending = new Map<number, InMessage[]>(seqs.map((s) => [s, []]));
    while (bySeq.size < seqs.length) {
      for (const m of this.recvOnce(reqs[0].what)) {
        if (m.type === NLMSG_ERROR) {
          const e = parseError(m);
          const msgs = pending.get(e.seq);
          if (!msgs) continue; // an answer to an earlier, abandoned request
          bySeq.set(e.seq, { errno: e.errno, ...(e.extMessage ? { extMessage: e.extMessage } : {}), messages: msgs });
        } else if (m.type !== NLMSG_NOOP) pending.get(m.seq)?.push(m);
      }
    }
    return seqs.map((s) => bySeq.get(s)!);
  }

  /** A dump request (RTM_GETLINK, RTM_GETROUTE, ...): every message up to NLMSG_DONE. */
  dump(type: number, header: Buffer, what: string, attrs: readonly Attr[] = []): InMessage[] {
    this.seq = (this.seq + 1) >>> 0 || 1;
    const seq = this.seq;
    const buf = encodeMessage({ type, flags: NLM_F_REQUEST | NLM_F_DUMP, seq, header, attrs });
    const c = libc();
    if (c.send(this.fd, buf, buf.length, 0) < 0)
      throw new NetlinkError(what, c.errno(), `cannot send to the kernel (${this.where})`);
    const out: InMessage[] = [];
    for (;;) {
      for (const m of this.recvOnce(what)) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_DONE) {
          const err = m.payload.length >= 4 ? -m.payload.readInt32LE(0) : 0;
          if (err > 0) throw new NetlinkError(what, err, `${what} in ${this.where} failed`);
          return out;
        }
        if (m.type === NLMSG_ERROR) {
          const e = parseError(m);
          if (e.errno) throw new NetlinkError(what, e.errno, `${what} in ${this.where} failed`, e.extMessage);
          return out;
        }
        if (m.flags & NLM_F_MULTI || m.type !== NLMSG_NOOP) out.push(m);
      }
    }
  }
}
