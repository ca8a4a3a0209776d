// Encoding and decoding of netlink messages, without a kernel: layouts, nesting, padding,
// error answers, and address text the way `ip` prints it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  AF_INET6,
  IFA_F_NODAD,
  IFA_FLAGS,
  IFA_LOCAL,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTNH_F_ONLINK,
  VETH_INFO_PEER,
} from "./consts.js";
import {
  cstr,
  encodeAttrs,
  encodeMessage,
  ipBytes,
  ipString,
  macBytes,
  macString,
  parseAttrs,
  parseError,
  parseIfaddrmsg,
  parseIfinfomsg,
  parseMessages,
  parseRtmsg,
  strAttr,
  u32Attr,
} from "./message.js";
import { addAddr, addRoute, newVeth } from "./requests.js";

const enc = (
  r: { type: number; flags?: number; header: Buffer; attrs?: readonly import("./message.js").Attr[] },
  seq = 7,
) =>
  encodeMessage({
    type: r.type,
    flags: NLM_F_REQUEST | NLM_F_ACK | (r.flags ?? 0),
    seq,
    header: r.header,
    attrs: r.attrs ?? [],
  });

test("nlmsghdr carries length, type, flags and sequence; attributes are padded to 4 bytes", () => {
  const b = encodeMessage({
    type: RTM_NEWLINK,
    flags: NLM_F_REQUEST,
    seq: 0xdeadbeef,
    header: Buffer.alloc(16),
    attrs: [strAttr(IFLA_IFNAME, "eth0")],
  });
  // 16 header + 16 ifinfomsg + (4 + "eth0\0" = 9, padded to 12)
  assert.equal(b.length, 44);
  assert.equal(b.readUInt32LE(0), 44);
  assert.equal(b.readUInt16LE(4), RTM_NEWLINK);
  assert.equal(b.readUInt16LE(6), NLM_F_REQUEST);
  assert.equal(b.readUInt32LE(8), 0xdeadbeef);
  assert.equal(b.readUInt16LE(32), 9, "rtattr length excludes padding");
  assert.equal(b.readUInt16LE(34), IFLA_IFNAME);
  assert.deepEqual([...b.subarray(41, 44)], [0, 0, 0], "NUL and padding");
  const [m] = parseMessages(Buffer.concat([b, b]).subarray(0, 44));
  assert.equal(cstr(parseAttrs(m.payload, 16).get(IFLA_IFNAME)!), "eth0");
});

test("a veth request nests LINKINFO > INFO_DATA > PEER (an ifinfomsg plus its own attributes)", () => {
  const req = newVeth({
    host: "wf0123456789a",
    hostMac: "02:00:00:aa:00:01",
    peer: "eth0",
    peerMac: "02:00:00:bb:00:01",
    mtu: 1400,
    peerNsFd: 42,
  });
  const [m] = parseMessages(enc(req));
  assert.equal(m.type, RTM_NEWLINK);
  assert.equal(m.flags & (NLM_F_CREATE | NLM_F_EXCL), NLM_F_CREATE | NLM_F_EXCL);
  const top = parseAttrs(m.payload, 16);
  assert.equal(cstr(top.get(IFLA_IFNAME)!), "wf0123456789a");
  assert.equal(top.get(IFLA_MTU)!.readUInt32LE(0), 1400);
  assert.equal(macString(top.get(IFLA_ADDRESS)!), "02:00:00:aa:00:01");
  const info = parseAttrs(top.get(IFLA_LINKINFO)!);
  assert.equal(cstr(info.get(IFLA_INFO_KIND)!), "veth");
  const peer = parseAttrs(info.get(IFLA_INFO_DATA)!).get(VETH_INFO_PEER)!;
  assert.equal(parseIfinfomsg(peer).index, 0);
  const pa = parseAttrs(peer, 16);
  assert.equal(cstr(pa.get(IFLA_IFNAME)!), "eth0");
  assert.equal(pa.get(IFLA_MTU)!.readUInt32LE(0), 1400);
  assert.equal(macString(pa.get(IFLA_ADDRESS)!), "02:00:00:bb:00:01");
  assert.equal(pa.get(IFLA_NET_NS_FD)!.readUInt32LE(0), 42);
  // Lengths add up: each nest's length covers its children.
  assert.equal(top.get(IFLA_LINKINFO)!.length, encodeAttrs(parseAttrsToList(top.get(IFLA_LINKINFO)!)).length);
});

function parseAttrsToList(b: Buffer) {
  return [...parseAttrs(b)].map(([type, value]) => ({ type, value }));
}

test("address and route requests: IPv6 nodad in both the header byte and IFA_FLAGS; onlink gateway routes", () => {
  const [a] = parseMessages(enc(addAddr(6, "fd80::2", 128, 5, true, "eth0")));
  assert.equal(a.type, RTM_NEWADDR);
  const h = parseIfaddrmsg(a.payload);
  assert.deepEqual(h, { family: AF_INET6, prefixlen: 128, flags: IFA_F_NODAD, scope: 0, index: 5 });
  const at = parseAttrs(a.payload, 8);
  assert.equal(ipString(at.get(IFA_LOCAL)!), "fd80::2");
  assert.equal(at.get(IFA_FLAGS)!.readUInt32LE(0), IFA_F_NODAD);

  const [r] = parseMessages(
    enc(addRoute({ fam: 4, dst: "10.99.0.0", dstLen: 16, gateway: "169.254.1.1", onlink: true, oif: 9, dev: "eth0" })),
  );
  const rh = parseRtmsg(r.payload);
  assert.equal(rh.dstLen, 16);
  assert.equal(rh.flags, RTNH_F_ONLINK);
  assert.equal(rh.table, 254);
  const ra = parseAttrs(r.payload, 12);
  assert.equal(ipString(ra.get(RTA_DST)!), "10.99.0.0");
  assert.equal(ipString(ra.get(RTA_GATEWAY)!), "169.254.1.1");
  assert.equal(ra.get(RTA_OIF)!.readUInt32LE(0), 9);
  const [d] = parseMessages(enc(addRoute({ fam: 6, dst: "::", dstLen: 0, gateway: "fe80::1", oif: 3, dev: "eth0" })));
  assert.equal(parseAttrs(d.payload, 12).has(RTA_DST), false, "a default route has no RTA_DST");
});

/** An NLMSG_ERROR as the kernel writes it: errno, the request's header (whole request unless capped), TLVs. */
function errorMessage(errno: number, seq: number, opts: { capped: boolean; ext?: string; echo?: Buffer }): Buffer {
  const req = opts.echo ?? encodeMessage({ type: RTM_NEWLINK, flags: NLM_F_REQUEST, seq, header: Buffer.alloc(16) });
  const body = Buffer.alloc(4);
  body.writeInt32LE(-errno);
  const flags = (opts.capped ? NLM_F_CAPPED : 0) | (opts.ext ? NLM_F_ACK_TLVS : 0);
  return encodeMessage({
    type: NLMSG_ERROR,
    flags,
    seq,
    header: Buffer.concat([body, opts.capped ? req.subarray(0, 16) : req]),
    attrs: opts.ext ? [strAttr(NLMSGERR_ATTR_MSG, opts.ext)] : [],
  });
}

test("NLMSG_ERROR: errno, the sequence it answers, and the kernel's extended-ack text (capped or not)", () => {
  const capped = errorMessage(17, 11, { capped: true, ext: "Nexthop has invalid gateway" });
  const [m] = parseMessages(capped);
  assert.deepEqual(parseError(m), {
    errno: 17,
    seq: 11,
    requestType: RTM_NEWLINK,
    extMessage: "Nexthop has invalid gateway",
  });
  const echo = encodeMessage({
    type: RTM_NEWLINK,
    flags: NLM_F_REQUEST,
    seq: 12,
    header: Buffer.alloc(16),
    attrs: [u32Attr(IFLA_MTU, 1)],
  });
  const full = errorMessage(22, 12, { capped: false, ext: "bad", echo });
  assert.deepEqual(parseError(parseMessages(full)[0]), {
    errno: 22,
    seq: 12,
    requestType: RTM_NEWLINK,
    extMessage: "bad",
  });
  const ack = errorMessage(0, 13, { capped: true });
  assert.deepEqual(parseError(parseMessages(ack)[0]), { errno: 0, seq: 13, requestType: RTM_NEWLINK });
});

test("a truncated datagram is refused rather than misread", () => {
  const b = encodeMessage({ type: RTM_NEWLINK, flags: 0, seq: 1, header: Buffer.alloc(16) });
  assert.throws(() => parseMessages(b.subarray(0, 20)), /malformed/);
});

test("IPv6 text matches what inet_ntop (and so ip) prints", () => {
  const cases: [string, string][] = [
    ["::", "::"],
    ["::1", "::1"],
    ["fe80::1", "fe80::1"],
    ["FD80:0:0:0:0:0:0:2", "fd80::2"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
    ["::ffff:10.1.2.3", "::ffff:10.1.2.3"],
    ["::10.1.2.3", "::10.1.2.3"],
    ["1::", "1::"],
  ];
  for (const [input, printed] of cases) assert.equal(ipString(ipBytes(input)), printed, input);
  assert.equal(ipString(ipBytes("10.80.0.2")), "10.80.0.2");
  // Random addresses: same text as the WHATWG URL serializer (the same compression rule) gives.
  for (let i = 0; i < 500; i++) {
    const b = randomBytes(16);
    for (let g = 0; g < 8; g++) if (Math.random() < 0.4) b.writeUInt16BE(0, g * 2);
    if (b.readUInt32BE(0) === 0 && b.readUInt32BE(4) === 0 && b.readUInt16BE(8) === 0) b[0] = 0x20; // not v4-mapped/compatible
    const s = ipString(b);
    assert.equal(s, new URL(`http://[${s}]`).hostname.slice(1, -1));
    assert.deepEqual(ipBytes(s), b);
  }
});

test("MAC addresses round-trip", () => {
  assert.equal(macString(macBytes("02:0a:ff:00:10:01")), "02:0a:ff:00:10:01");
});
