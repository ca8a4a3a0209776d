// Encoding and decoding of rtnetlink messages: nlmsghdr, the fixed family headers (ifinfomsg,
// ifaddrmsg, rtmsg, ndmsg) and rtattr TLVs, nested where the kernel nests them. Pure functions on
// Buffers (host byte order, which is what netlink uses), so they can be unit-tested without a kernel.
import { formatIp, ipFromBytes, ipOrThrow, ipToBytes } from "../../net/ip.js";
import { NLM_F_ACK_TLVS, NLM_F_CAPPED, NLMSG_ERROR, NLMSGERR_ATTR_MSG } from "./consts.js";

export const NLMSG_HDRLEN = 16;
const align4 = (n: number) => (n + 3) & ~3;

/** One rtattr: a payload, or nested attributes. */
export interface Attr {
  type: number;
  value: Buffer | Attr[];
}

export const u32Attr = (type: number, n: number): Attr => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return { type, value: b };
};
/** A NUL-terminated string attribute (IFLA_IFNAME, IFLA_INFO_KIND). */
export const strAttr = (type: number, s: string): Attr => ({
  type,
  value: Buffer.concat([Buffer.from(s, "utf8"), Buffer.alloc(1)]),
});
export const bytesAttr = (type: number, b: Buffer): Attr => ({ type, value: b });
export const nestAttr = (type: number, ...attrs: Attr[]): Attr => ({ type, value: attrs });

function attrsLength(attrs: readonly Attr[]): number {
  let n = 0;
  for (const a of attrs) n += align4(4 + payloadLength(a));
  return n;
}
function payloadLength(a: Attr): number {
  return Buffer.isBuffer(a.value) ? a.value.length : attrsLength(a.value);
}

/** Writes attrs at `off` (4-aligned); returns the offset after them. */
function writeAttrs(buf: Buffer, off: number, attrs: readonly Attr[]): number {
  for (const a of attrs) {
    const len = 4 + payloadLength(a);
    if (len > 0xffff) throw new RangeError(`netlink attribute ${a.type} is too long (${len} bytes)`);
    buf.writeUInt16LE(len, off);
    buf.writeUInt16LE(a.type, off + 2);
    if (Buffer.isBuffer(a.value)) a.value.copy(buf, off + 4);
    else writeAttrs(buf, off + 4, a.value);
    off += align4(len); // padding bytes stay zero (Buffer.alloc)
  }
  return off;
}

/** Encodes attributes alone (also what a nested attribute's payload is). */
export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const buf = Buffer.alloc(attrsLength(attrs));
  writeAttrs(buf, 0, attrs);
  return buf;
}

export interface OutMessage {
  type: number;
  flags: number;
  seq: number;
  /** The family header (ifinfomsg, ...), already encoded. */
  header: Buffer;
  attrs?: readonly Attr[];
}

/** One netlink message: nlmsghdr (port id 0: the kernel fills it in), header, attributes. */
export function encodeMessage(m: OutMessage): Buffer {
  const hdr = align4(m.header.length);
  const len = NLMSG_HDRLEN + hdr + attrsLength(m.attrs ?? []);
  const buf = Buffer.alloc(len);
  buf.writeUInt32LE(len, 0);
  buf.writeUInt16LE(m.type, 4);
  buf.writeUInt16LE(m.flags, 6);
  buf.writeUInt32LE(m.seq >>> 0, 8);
  buf.writeUInt32LE(0, 12);
  m.header.copy(buf, NLMSG_HDRLEN);
  writeAttrs(buf, NLMSG_HDRLEN + hdr, m.attrs ?? []);
  return buf;
}

// ---- family headers ----

export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}
export function ifinfomsg(h: Partial<IfInfoMsg>): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(h.family ?? 0, 0);
  b.writeUInt16LE(h.type ?? 0, 2);
  b.writeInt32LE(h.index ?? 0, 4);
  b.writeUInt32LE(h.flags ?? 0, 8);
  b.writeUInt32LE(h.change ?? 0, 12);
  return b;
}
export function parseIfinfomsg(b: Buffer): IfInfoMsg {
  return {
    family: b.readUInt8(0),
    type: b.readUInt16LE(2),
    index: b.readInt32LE(4),
    flags: b.readUInt32LE(8),
    change: b.readUInt32LE(12),
  };
}

export interface IfAddrMsg {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
}
export function ifaddrmsg(h: IfAddrMsg): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(h.family, 0);
  b.writeUInt8(h.prefixlen, 1);
  b.writeUInt8(h.flags & 0xff, 2);
  b.writeUInt8(h.scope, 3);
  b.writeUInt32LE(h.index, 4);
  return b;
}
export function parseIfaddrmsg(b: Buffer): IfAddrMsg {
  return {
    family: b.readUInt8(0),
    prefixlen: b.readUInt8(1),
    flags: b.readUInt8(2),
    scope: b.readUInt8(3),
    index: b.readUInt32LE(4),
  };
}

export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}
export function rtmsg(h: Partial<RtMsg> & { family: number }): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(h.family, 0);
  b.writeUInt8(h.dstLen ?? 0, 1);
  b.writeUInt8(h.srcLen ?? 0, 2);
  b.writeUInt8(h.tos ?? 0, 3);
  b.writeUInt8(h.table ?? 0, 4);
  b.writeUInt8(h.protocol ?? 0, 5);
  b.writeUInt8(h.scope ?? 0, 6);
  b.writeUInt8(h.type ?? 0, 7);
  b.writeUInt32LE(h.flags ?? 0, 8);
  return b;
}
export function parseRtmsg(b: Buffer): RtMsg {
  return {
    family: b.readUInt8(0),
    dstLen: b.readUInt8(1),
    srcLen: b.readUInt8(2),
    tos: b.readUInt8(3),
    table: b.readUInt8(4),
    protocol: b.readUInt8(5),
    scope: b.readUInt8(6),
    type: b.readUInt8(7),
    flags: b.readUInt32LE(8),
  };
}

export interface NdMsg {
  family: number;
  ifindex: number;
  state: number;
  flags: number;
  type: number;
}
export function ndmsg(h: NdMsg): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(h.family, 0);
  b.writeInt32LE(h.ifindex, 4);
  b.writeUInt16LE(h.state, 8);
  b.writeUInt8(h.flags, 10);
  b.writeUInt8(h.type, 11);
  return b;
}

// ---- decoding ----

export interface InMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Everything after the nlmsghdr. */
  payload: Buffer;
}

/** Splits a datagram into its messages. Throws on a truncated or malformed one. */
export function parseMessages(buf: Buffer): InMessage[] {
  const out: InMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length)
      throw new Error(`malformed netlink message: length ${len} at offset ${off} of ${buf.length}`);
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes in buf (from `start`), by type; the last one of a type wins. */
export function parseAttrs(buf: Buffer, start = 0): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = start;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break; // the kernel never sends these; stop rather than misread
    out.set(buf.readUInt16LE(off + 2) & 0x3fff, buf.subarray(off + 4, off + len)); // drop NESTED/BYTEORDER bits
    off += align4(len);
  }
  return out;
}

export interface NlError {
  /** Positive errno; 0 for a plain ACK. */
  errno: number;
  /** Sequence number of the request this answers. */
  seq: number;
  /** Request message type, from the echoed header. */
  requestType: number;
  /** The kernel's extended-ack text, when it gave one. */
  extMessage?: string;
}

/** Decodes the payload of an NLMSG_ERROR (struct nlmsgerr plus optional extended-ack TLVs). */
export function parseError(m: InMessage): NlError {
  if (m.type !== NLMSG_ERROR || m.payload.length < 4 + NLMSG_HDRLEN) throw new Error("not an NLMSG_ERROR message");
  const errno = -m.payload.readInt32LE(0) || 0; // not -0 for an ACK
  const reqLen = m.payload.readUInt32LE(4);
  const requestType = m.payload.readUInt16LE(8);
  const out: NlError = { errno, seq: m.payload.readUInt32LE(12), requestType };
  if (m.flags & NLM_F_ACK_TLVS) {
    // Without NLM_F_CAPPED the whole request is echoed before the TLVs.
    const tlvStart = 4 + (m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(reqLen));
    const msg = parseAttrs(m.payload, tlvStart).get(NLMSGERR_ATTR_MSG);
    if (msg) out.extMessage = cstr(msg);
  }
  return out;
}

/** A NUL-terminated string payload. */
export function cstr(b: Buffer): string {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString("utf8");
}

// ---- addresses ----

/** 4 or 16 bytes of an IPv4/IPv6 address (net/ip.ts parses; a zone id or bad text throws). */
export function ipBytes(addr: string): Buffer {
  return ipToBytes(ipOrThrow(addr));
}

/** Text form of 4 or 16 address bytes, as inet_ntop writes it (what `ip` prints). */
export function ipString(b: Buffer): string {
  const a = ipFromBytes(b);
  if (!a) throw new Error(`an IP address has 4 or 16 bytes, not ${b.length}`);
  return formatIp(a.family, a.value, { dottedV4Tail: true });
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(":").map((x) => parseInt(x, 16)));
}
export function macString(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}
