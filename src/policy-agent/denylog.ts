// Denied connections, logged: the group chains send (kernel-rate-limited) copies of dropped
// packets to an NFLOG group with the prefix "weft deny <direction> <group>: ". A tcpdump child in
// the node's namespace writes them as pcap; this reads the NFLOG records (prefix + packet), maps
// the group back to its policies and the address to the local pod, and logs one line per packet,
// rate-limited per group in userspace as well.
import type { Logger } from "pino";
import { formatIp, ipFromBytes } from "../net/ip.js";
import { spawnNflogCapture, type NflogCapture } from "../kernel/nft.js";
import type { CompiledModel, Direction } from "../policy/index.js";

export interface DeniedPacket {
  direction: Direction;
  group: string;
  family: 4 | 6;
  protocol: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
}

const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;
const PREFIX_RE = /^weft deny (ingress|egress) ([A-Za-z0-9_]+):/;
const PROTOS: Record<number, string> = { 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP" };

/** The canonical text of 4 or 16 address bytes (the slices below always have that length). */
function ipText(b: Buffer): string {
  const a = ipFromBytes(b);
  return a ? formatIp(a.family, a.value) : b.toString("hex");
}

/** Parses one pcap record body of link type NFLOG (239); null when it is not a weft deny. */
export function parseNflogRecord(rec: Buffer): DeniedPacket | null {
  if (rec.length < 4) return null;
  let prefix: string | null = null;
  let payload: Buffer | null = null;
  // Header: family (1), version (1), resource id (2, big-endian); then TLVs in host order (LE here).
  for (let off = 4; off + 4 <= rec.length;) {
    const len = rec.readUInt16LE(off);
    const type = rec.readUInt16LE(off + 2) & 0x7fff;
    if (len < 4 || off + len > rec.length) break;
    const value = rec.subarray(off + 4, off + len);
    if (type === NFULA_PREFIX) prefix = value.toString("latin1").replace(/\0.*$/s, "");
    else if (type === NFULA_PAYLOAD) payload = value;
    off += (len + 3) & ~3;
  }
  const m = prefix ? PREFIX_RE.exec(prefix) : null;
  if (!m || !payload || payload.length < 20) return null;
  const version = payload[0] >> 4;
  let family: 4 | 6, proto: number, src: string, dst: string, l4: number;
  if (version === 4) {
    family = 4;
    proto = payload[9];
    src = ipText(payload.subarray(12, 16));
    dst = ipText(payload.subarray(16, 20));
    l4 = (payload[0] & 0x0f) * 4;
  } else if (version === 6 && payload.length >= 40) {
    family = 6;
    proto = payload[6];
    src = ipText(payload.subarray(8, 24));
    dst = ipText(payload.subarray(24, 40));
    l4 = 40;
  } else return null;
  const out: DeniedPacket = {
    direction: m[1] as Direction,
    group: m[2],
    family,
    protocol: PROTOS[proto] ?? String(proto),
    src,
    dst,
  };
  if ((proto === 6 || proto === 17 || proto === 132) && payload.length >= l4 + 4) {
    out.sport = payload.readUInt16BE(l4);
    out.dport = payload.readUInt16BE(l4 + 2);
  }
  return out;
}

/** Splits a pcap byte stream into record bodies. */
export class PcapReader {
  private buf: Buffer = Buffer.alloc(0);
  private headerSeen = false;
  private little = true;
  linktype: number | null = null;

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    if (!this.headerSeen) {
      if (this.buf.length < 24) return out;
      const magic = this.buf.readUInt32LE(0);
      if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) this.little = true;
      else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) this.little = false;
      else throw new Error("NFLOG capture: not a pcap stream");
      this.linktype = this.little ? this.buf.readUInt32LE(20) : this.buf.readUInt32BE(20);
      this.headerSeen = true;
      this.buf = this.buf.subarray(24);
    }
    while (this.buf.length >= 16) {
      const incl = this.little ? this.buf.readUInt32LE(8) : this.buf.readUInt32BE(8);
      if (this.buf.length < 16 + incl) break;
      out.push(this.buf.subarray(16, 16 + incl));
      this.buf = this.buf.subarray(16 + incl);
    }
    return out;
  }
}

/** Token bucket per key; counts what it suppressed so the next line can say so. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number; suppressed: number }>();
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** null = suppress; otherwise the number of lines suppressed since the last one allowed. */
  take(key: string): number | null {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: t, suppressed: 0 };
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.perSecond);
    b.at = t;
    this.buckets.set(key, b);
    if (b.tokens < 1) {
      b.suppressed++;
      return null;
    }
    b.tokens -= 1;
    const s = b.suppressed;
    b.suppressed = 0;
    return s;
  }
}

export interface DenyLogOptions {
  /** Namespace of the table (the node's); absent = this process' namespace. */
  netns?: string;
  /** NFLOG group the ruleset logs to (RenderOptions.nflogGroup). Default 100. */
  group?: number;
  log: Logger;
  /** The model the kernel holds, to name policies and pods. */
  model: () => CompiledModel | null;
  /** Lines per second per isolation group (burst twice that). Default 5. */
  linesPerSecond?: number;
  /** Extra listener (tests, metrics). */
  onDenied?: (p: DeniedPacket & { policies: string[]; pod: string | null }) => void;
}

/** Reads denied packets from NFLOG and logs them. start() resolves when the listener is bound. */
export class DenyLogger {
  private child: NflogCapture | null = null;
  private stopped = false;
  private restart: NodeJS.Timeout | undefined;
  private restartDelay = 1000;
  private readonly limiter: RateLimiter;

  constructor(private readonly opts: DenyLogOptions) {
    const r = opts.linesPerSecond ?? 5;
    this.limiter = new RateLimiter(r, r * 2);
  }

  /** PID of the running capture (tcpdump), if any. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): Promise<void> {
    const group = this.opts.group ?? 100;
    const child = spawnNflogCapture(group, this.opts.netns === undefined ? {} : { netns: this.opts.netns });
    this.child = child;
    const reader = new PcapReader();
    child.stdout.on("data", (d: Buffer) => {
      let recs: Buffer[];
      try {
        recs = reader.push(d);
      } catch (e) {
        this.opts.log.error({ err: String(e) }, "denied-packet log: unreadable capture");
        return;
      }
      for (const r of recs) {
        const p = parseNflogRecord(r);
        if (p) this.report(p);
      }
    });
    let err = "";
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`NFLOG listener (tcpdump -i nflog:${group}) did not start: ${err.trim()}`)),
        10_000,
      );
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        err = (err + d).slice(-2000);
        if (err.includes("listening on")) {
          clearTimeout(timer);
          this.restartDelay = 1000;
          resolve();
        }
      });
      child.on("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`NFLOG listener: ${e.message}`));
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        reject(new Error(`NFLOG listener exited (${code}): ${err.trim()}`));
        if (this.child === child) this.child = null;
        if (!this.stopped) {
          const delay = this.restartDelay;
          this.restartDelay = Math.min(delay * 2, 60_000);
          this.opts.log.warn(
            { code, stderr: err.trim().split("\n").pop(), retryInMs: delay },
            "denied-packet listener exited; restarting",
          );
          this.restart = setTimeout(() => void this.start().catch(() => undefined), delay);
        }
      });
    });
    return ready;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restart) clearTimeout(this.restart);
    const c = this.child;
    this.child = null;
    if (c && c.pid !== undefined && c.exitCode === null) {
      const closed = new Promise<void>((r) => c.once("close", () => r()));
      process.kill(c.pid, "SIGTERM");
      await closed;
    }
  }

  private report(p: DeniedPacket): void {
    const model = this.opts.model();
    const group = model?.groups.find((g) => g.id === p.group);
    const policies = group
      ? group.policies
          .map((id) => model!.policies.find((x) => x.id === id))
          .filter((x) => x !== undefined)
          .map((x) => `${x.ref.namespace}/${x.ref.name}`)
      : [];
    const localAddr = p.direction === "ingress" ? p.dst : p.src;
    const pod = model?.localPods.find((lp) => lp.ips.includes(localAddr))?.key ?? null;
    this.opts.onDenied?.({ ...p, policies, pod });
    const suppressed = this.limiter.take(p.group);
    if (suppressed === null) return;
    this.opts.log.warn(
      {
        event: "policy-deny",
        direction: p.direction,
        group: p.group,
        policies,
        pod,
        protocol: p.protocol,
        src: p.src,
        dst: p.dst,
        sport: p.sport,
        dport: p.dport,
        ...(suppressed ? { suppressed } : {}),
      },
      `denied ${p.direction} ${p.protocol} ${p.src}${p.sport !== undefined ? `:${p.sport}` : ""} -> ${p.dst}${p.dport !== undefined ? `:${p.dport}` : ""} (${pod ?? "unknown pod"}; isolated by ${policies.join(", ") || p.group})`,
    );
  }
}
