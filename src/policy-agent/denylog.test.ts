// The NFLOG pcap reader and the deny-log rate limiter (the kernel path is covered by
// e2e/policy/controller.test.ts, which reads real NFLOG records from tcpdump).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createNetns, removeAllNetns } from "../testlib/netns.js";
import { PcapReader, RateLimiter, parseNflogRecord } from "./denylog.js";

after(removeAllNetns);

/** "gone" when the PID no longer exists or is a zombie (dead, waiting for whoever adopted it to reap it). */
function processState(pid: number): "running" | "gone" {
  const f = `/proc/${pid}/status`;
  if (!existsSync(f)) return "gone";
  try {
    const state = /^State:\s+(\S)/m.exec(readFileSync(f, "utf8"))?.[1];
    return state === "Z" || state === "X" ? "gone" : "running";
  } catch {
    return "gone";
  }
}

test(
  "the deny log's tcpdump dies with an agent killed with -9",
  { skip: process.getuid?.() !== 0 && "needs root to create network namespaces and capture NFLOG" },
  async () => {
    const node = await createNetns("dl");
    // A stand-in agent: a process that starts the deny log and reports the capture's PID.
    const mod = new URL("./denylog.js", import.meta.url).href;
    const code = `import pino from "pino"; import { DenyLogger } from ${JSON.stringify(mod)};
const d = new DenyLogger({ netns: ${JSON.stringify(node.path)}, group: 100, log: pino({ level: "silent" }), model: () => null });
await d.start(); process.stdout.write(String(d.pid) + "\\n"); setInterval(() => {}, 1000);`;
    const agent = spawn(process.execPath, ["--input-type=module", "-e", code], {
      cwd: process.cwd(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    agent.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      agent.stdout!.setEncoding("utf8").on("data", (d: string) => {
        out += d;
        if (out.includes("\n")) resolve(Number(out.trim()));
      });
      agent.on("close", (c) =>
        reject(new Error(`the deny-log process exited (${c}) before starting the capture: ${err}`)),
      );
    });
    try {
      assert.ok(Number.isInteger(pid) && pid > 0, `capture PID ${pid}`);
      assert.equal(processState(pid), "running", "tcpdump runs while the agent does");
      assert.match(readFileSync(`/proc/${pid}/comm`, "utf8"), /tcpdump/);
      agent.kill("SIGKILL");
      await new Promise((r) => agent.once("close", r));
      const deadline = Date.now() + 1000;
      while (processState(pid) === "running" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(processState(pid), "gone", "tcpdump is gone within a second of the agent's SIGKILL");
    } finally {
      if (agent.exitCode === null && agent.signalCode === null) agent.kill("SIGKILL");
      if (processState(pid) === "running") process.kill(pid, "SIGKILL");
    }
  },
);

/** One NFLOG record body as the kernel/libpcap lay it out: 4-byte header, then TLVs in host order. */
function nflogRecord(prefix: string, payload: Buffer): Buffer {
  const tlv = (type: number, value: Buffer) => {
    const len = 4 + value.length;
    const b = Buffer.alloc((len + 3) & ~3);
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(type, 2);
    value.copy(b, 4);
    return b;
  };
  const hdr = Buffer.from([2, 0, 0, 100]);
  return Buffer.concat([
    hdr,
    tlv(1, Buffer.from([0x08, 0x00, 0x01, 0x00])),
    tlv(10, Buffer.from(prefix + "\0", "latin1")),
    tlv(9, payload),
  ]);
}

function ipv4Tcp(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x45;
  b.writeUInt16BE(40, 2);
  b[8] = 64;
  b[9] = 6;
  Buffer.from(src).copy(b, 12);
  Buffer.from(dst).copy(b, 16);
  b.writeUInt16BE(sport, 20);
  b.writeUInt16BE(dport, 22);
  return b;
}

function ipv6Udp(src: Buffer, dst: Buffer, sport: number, dport: number): Buffer {
  const b = Buffer.alloc(48);
  b[0] = 0x60;
  b.writeUInt16BE(8, 4);
  b[6] = 17;
  b[7] = 64;
  src.copy(b, 8);
  dst.copy(b, 24);
  b.writeUInt16BE(sport, 40);
  b.writeUInt16BE(dport, 42);
  return b;
}

function pcap(records: Buffer[]): Buffer {
  const g = Buffer.alloc(24);
  g.writeUInt32LE(0xa1b2c3d4, 0);
  g.writeUInt16LE(2, 4);
  g.writeUInt16LE(4, 6);
  g.writeUInt32LE(262144, 16);
  g.writeUInt32LE(239, 20);
  const recs = records.map((r) => {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(r.length, 8);
    h.writeUInt32LE(r.length, 12);
    return Buffer.concat([h, r]);
  });
  return Buffer.concat([g, ...recs]);
}

test("NFLOG records: prefix names direction and group; addresses and ports come from the packet", () => {
  const v4 = nflogRecord("weft deny ingress gi_0123456789ab: ", ipv4Tcp([10, 244, 2, 1], [10, 244, 1, 1], 40000, 7001));
  assert.deepEqual(parseNflogRecord(v4), {
    direction: "ingress",
    group: "gi_0123456789ab",
    family: 4,
    protocol: "TCP",
    src: "10.244.2.1",
    dst: "10.244.1.1",
    sport: 40000,
    dport: 7001,
  });
  const a6 = Buffer.from("fd000010024400010000000000000001", "hex");
  const b6 = Buffer.from("fd000010024400020000000000000001", "hex");
  const v6 = nflogRecord("weft deny egress ge_abcdef012345: ", ipv6Udp(a6, b6, 5353, 53));
  assert.deepEqual(parseNflogRecord(v6), {
    direction: "egress",
    group: "ge_abcdef012345",
    family: 6,
    protocol: "UDP",
    src: "fd00:10:244:1::1",
    dst: "fd00:10:244:2::1",
    sport: 5353,
    dport: 53,
  });
  assert.equal(
    parseNflogRecord(nflogRecord("someone else: ", ipv4Tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2))),
    null,
    "other NFLOG users' records are ignored",
  );
  assert.equal(parseNflogRecord(Buffer.from([2, 0, 0, 100, 0xff])), null, "truncated records are ignored");
});

test("the pcap reader splits a stream into records, whatever the chunking", () => {
  const recs = [1, 2, 3].map((i) =>
    nflogRecord(`weft deny ingress gi_${i}: `, ipv4Tcp([10, 0, 0, i], [10, 0, 1, i], 1000 + i, 80)),
  );
  const stream = pcap(recs);
  for (const size of [1, 7, 24, 100, stream.length]) {
    const r = new PcapReader();
    const got: Buffer[] = [];
    for (let i = 0; i < stream.length; i += size) got.push(...r.push(stream.subarray(i, i + size)));
    assert.equal(r.linktype, 239);
    assert.deepEqual(
      got.map((g) => parseNflogRecord(g)?.group),
      ["gi_1", "gi_2", "gi_3"],
      `chunks of ${size}`,
    );
  }
  assert.throws(() => new PcapReader().push(Buffer.alloc(24)), /not a pcap stream/);
});

test("the deny-log rate limiter allows a burst, then a steady rate, and reports what it suppressed", () => {
  let now = 0;
  const rl = new RateLimiter(2, 4, () => now);
  const first = Array.from({ length: 6 }, () => rl.take("g"));
  assert.deepEqual(first, [0, 0, 0, 0, null, null]);
  assert.equal(rl.take("other"), 0, "each group has its own bucket");
  now += 500; // one token back at 2/s
  assert.equal(rl.take("g"), 2, "the next line says 2 were suppressed");
  assert.equal(rl.take("g"), null);
});
