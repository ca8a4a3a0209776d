// A seeded, reproducible generator of malformed input for the agent's socket and the CNI plugin:
// mutations of valid JSON-line requests, of valid WEFTCNI1 frames and of valid runtime calls
// (CNI_* environment + network config on stdin). Pure: no I/O, no clock, no Math.random; case i
// of seed s is always the same bytes, so a failing case is rerun from its (seed, index) alone.
//
// Safety: every path the generator writes names either the context's own (test-made) paths, a
// file that is not a namespace, or nothing at all. It never names /proc/*/ns/* or a system
// CNI_PATH directory, so no mutation can point the agent at the machine's own namespace or make
// the plugin exec a real IPAM plugin.

/** sfc32 seeded through splitmix32: small, fast, and the same sequence on every machine. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    let s = seed >>> 0;
    const mix = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t >>> 0;
  }
  /** 0 <= x < n */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/** Mixes a run's seed and a case index into the case's own seed (cases are independent). */
export function caseSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x27d4eb2d)) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

/** The test's own world the valid bases are built from. */
export interface FuzzContext {
  /** The agent's socket (goes into CNI configs). */
  socket: string;
  /** A pod network namespace the test made (the only namespace any case names). */
  podNetns: string;
  /** The network name the valid bases use. */
  network: string;
  /** CNI_PATH of the valid bases: a directory with no IPAM plugin in it. */
  cniPath: string;
}

/** Bytes for the agent's one-JSON-line protocol. */
export interface LineCase {
  kind: "line";
  index: number;
  what: string;
  bytes: Buffer;
}

/** Bytes that start like (or are) a WEFTCNI1 frame, broken at the framing level. */
export interface FrameCase {
  kind: "frame";
  index: number;
  what: string;
  bytes: Buffer;
}

/** One runtime call: the environment and stdin a runtime hands the plugin. */
export interface PluginCase {
  kind: "plugin";
  index: number;
  what: string;
  env: Record<string, string>;
  stdin: Buffer;
}

export type FuzzCase = LineCase | FrameCase | PluginCase;

export const FRAME_MAGIC = "WEFTCNI1";

/** The WEFTCNI1 request encoding (src/agent/frame.ts), written out here so the test needs no agent internals. */
export function encodeFrameBytes(env: Record<string, string>, stdin: Buffer): Buffer {
  const e = Buffer.from(
    Object.entries(env)
      .map(([k, v]) => `${k}=${v}\0`)
      .join(""),
  );
  const len = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  };
  return Buffer.concat([Buffer.from(FRAME_MAGIC + "\n"), len(e.length), e, len(stdin.length), stdin]);
}

// ---- Hostile values ---------------------------------------------------------------------------

/** Strings that are wrong in some way for every field they can land in. None names a namespace. */
const EVIL_STRINGS: readonly string[] = [
  "",
  " ",
  ".",
  "..",
  "../../../../etc/passwd",
  "/run/netns/../../etc/hostname",
  "/etc/passwd",
  "/dev/null",
  "/nonexistent/ns",
  "relative/path",
  "/run/netns/",
  "/run/netns",
  "eth0/../..",
  "a\u0000b",
  "\u0000",
  "wf;reboot",
  "$(id)",
  "`id`",
  '"',
  "'",
  "#",
  "\\",
  'eth0"',
  "eth 0",
  "eth0\n",
  "eth:0",
  "%s%s%n",
  "\u202eoops",
  "\ud800",
  "\u{1f4a5}",
  "ADD",
  "null",
  "[]",
  "{}",
  "-1",
  "0x10",
  "1e999",
  "NaN",
  "/run/weft/../../tmp/x.sock",
  "K8S_POD_NAME=x;K8S_POD_NAMESPACE=y",
  "=",
  ";;;",
  "a=b=c",
];

const NUMBERS: readonly string[] = [
  "0",
  "-1",
  "-0",
  "1e308",
  "1e999",
  "-1e999",
  "4294967296",
  "9007199254740993",
  "1.5",
  "65536",
  "67",
  "1e-400",
  "123456789012345678901234567890",
];

const KEYS: readonly string[] = [
  "__proto__",
  "constructor",
  "prototype",
  "extra",
  "",
  "op",
  "ok",
  "\u0000",
  "x".repeat(300),
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function evilValue(r: Rng): { json?: Json; raw?: string } {
  switch (r.int(9)) {
    case 0:
      return { json: r.pick(EVIL_STRINGS) };
    case 1:
      return { raw: r.pick(NUMBERS) };
    case 2:
      return { json: r.chance(0.5) };
    case 3:
      return { json: null };
    case 4:
      return { json: [] };
    case 5:
      return { json: {} };
    case 6:
      return { json: "x".repeat(r.pick([256, 4096, 70_000])) };
    case 7:
      return { raw: deep(r) };
    default:
      return { json: [r.pick(EVIL_STRINGS), r.int(1000)] };
  }
}

/** Deep nesting, as raw JSON text: arrays or objects, up to 100,000 levels. */
function deep(r: Rng): string {
  const n = r.pick([64, 1000, 10_000, 100_000]);
  return r.chance(0.5) ? "[".repeat(n) + "]".repeat(n) : '{"a":'.repeat(n) + "1" + "}".repeat(n);
}

/**
 * JSON text of OBJ with one value-level mutation applied at a random path: a key removed, an extra
 * key, or a value replaced by a hostile one (wrong type, huge number, long string, deep nesting).
 */
function mutateJson(r: Rng, obj: Record<string, Json>): { text: string; what: string } {
  // Collect the paths of every value (objects and arrays included).
  const paths: Array<Array<string | number>> = [];
  const walk = (v: Json, p: Array<string | number>) => {
    if (p.length) paths.push(p);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
    else if (v && typeof v === "object") for (const k of Object.keys(v)) walk(v[k], [...p, k]);
  };
  walk(obj, []);
  const RAW = "\u0001RAW\u0001";
  const clone = JSON.parse(JSON.stringify(obj)) as Record<string, Json>;
  const path = paths.length ? r.pick(paths) : [];
  const parentOf = (p: Array<string | number>): Json =>
    p.slice(0, -1).reduce<Json>((o, k) => (o as Record<string, Json>)[k as string], clone);
  const op = r.int(3);
  let what: string;
  let raw: string | undefined;
  if (op === 0 && path.length) {
    const parent = parentOf(path) as Record<string, Json> | Json[];
    const k = path[path.length - 1];
    if (Array.isArray(parent)) parent.splice(k as number, 1);
    else delete parent[k as string];
    what = `removed ${path.join(".")}`;
  } else if (op === 1) {
    const target = path.length && r.chance(0.5) ? (parentOf(path) as Json) : clone;
    const key = r.pick(KEYS);
    const v = evilValue(r);
    const obj = target && typeof target === "object" && !Array.isArray(target) ? target : clone;
    // defineProperty: a plain assignment to "__proto__" would set the prototype, not a key.
    Object.defineProperty(obj, key, {
      value: v.raw !== undefined ? RAW : (v.json as Json),
      enumerable: true,
      writable: true,
      configurable: true,
    });
    raw = v.raw;
    what = `extra key ${JSON.stringify(key.slice(0, 20))}`;
  } else {
    const v = evilValue(r);
    const parent = path.length ? (parentOf(path) as Record<string, Json>) : clone;
    const k = path.length ? path[path.length - 1] : "op";
    (parent as Record<string, Json>)[k as string] = v.raw !== undefined ? RAW : (v.json as Json);
    raw = v.raw;
    what = `${path.join(".") || "op"} := ${(v.raw ?? JSON.stringify(v.json) ?? "").slice(0, 40)}`;
  }
  let text = JSON.stringify(clone);
  if (raw !== undefined) text = text.replace(JSON.stringify(RAW), raw);
  return { text, what };
}

/** One byte-level mutation: truncation, bit flips, invalid UTF-8, deletions, duplications, garbage. */
function mutateBytes(r: Rng, b: Buffer): { bytes: Buffer; what: string } {
  const at = () => r.int(b.length + 1);
  switch (r.int(7)) {
    case 0: {
      const n = at();
      return { bytes: b.subarray(0, n), what: `truncated at ${n}/${b.length}` };
    }
    case 1: {
      const c = Buffer.from(b);
      const flips = 1 + r.int(8);
      for (let i = 0; i < flips && c.length; i++) c[r.int(c.length)] ^= 1 << r.int(8);
      return { bytes: c, what: `${flips} bit flip(s)` };
    }
    case 2: {
      const seq = r.pick([
        [0xff],
        [0xfe, 0xff],
        [0xc0, 0xaf],
        [0xed, 0xa0, 0x80],
        [0xf4, 0x90, 0x80, 0x80],
        [0x80],
        [0xe2, 0x82],
      ]);
      const i = at();
      return {
        bytes: Buffer.concat([b.subarray(0, i), Buffer.from(seq), b.subarray(i)]),
        what: `invalid UTF-8 at ${i}`,
      };
    }
    case 3: {
      const i = at();
      const j = Math.min(b.length, i + 1 + r.int(32));
      return { bytes: Buffer.concat([b.subarray(0, i), b.subarray(j)]), what: `deleted ${i}..${j}` };
    }
    case 4: {
      const i = at();
      const j = Math.min(b.length, i + 1 + r.int(64));
      return {
        bytes: Buffer.concat([b.subarray(0, j), b.subarray(i, j), b.subarray(j)]),
        what: `duplicated ${i}..${j}`,
      };
    }
    case 5: {
      const i = at();
      const n = 1 + r.int(64);
      return { bytes: Buffer.concat([b.subarray(0, i), r.bytes(n), b.subarray(i)]), what: `${n} random bytes at ${i}` };
    }
    default: {
      const n = r.pick([0, 1, 7, 100, 5000]);
      return { bytes: r.bytes(n), what: `${n} random bytes` };
    }
  }
}

// ---- Valid bases --------------------------------------------------------------------------------

const VERSIONS = ["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"] as const;

function prevResult(ctx: FuzzContext): Record<string, Json> {
  return {
    cniVersion: "1.1.0",
    interfaces: [
      { name: "wf0123456789a", mac: "02:00:00:00:00:01" },
      { name: "eth0", mac: "02:00:00:00:00:02", sandbox: ctx.podNetns },
    ],
    ips: [{ address: "10.99.0.5/32", gateway: "169.254.1.1", interface: 1 }],
    routes: [{ dst: "0.0.0.0/0", gw: "169.254.1.1" }],
  };
}

function baseRequest(r: Rng, ctx: FuzzContext, id: string): Record<string, Json> {
  const common = { network: ctx.network, containerId: id, ifname: "eth0" };
  switch (r.int(8)) {
    case 0:
    case 1:
    case 2:
      return {
        op: "add",
        ...common,
        netns: ctx.podNetns,
        args: { K8S_POD_NAMESPACE: "default", K8S_POD_NAME: id },
        ...(r.chance(0.3) ? { mtu: 1400 } : {}),
      };
    case 3:
      return {
        op: "add",
        ...common,
        netns: ctx.podNetns,
        args: {},
        ipam: { ips: [{ address: "10.99.0.5/32", gateway: "169.254.1.1" }], routes: [{ dst: "10.98.0.0/16" }] },
      };
    case 4:
      return { op: "del", ...common, netns: ctx.podNetns, ...(r.chance(0.3) ? { delegatedIpam: true } : {}) };
    case 5:
      return { op: "check", ...common, netns: ctx.podNetns, prevResult: prevResult(ctx) };
    case 6:
      return { op: "gc", network: ctx.network, validAttachments: [{ containerID: id, ifname: "eth0" }] };
    default:
      return r.chance(0.5) ? { op: "status", network: ctx.network } : { op: "ipam-check" };
  }
}

function baseCall(r: Rng, ctx: FuzzContext, id: string): { env: Record<string, string>; conf: Record<string, Json> } {
  const command = r.pick(["ADD", "ADD", "ADD", "DEL", "CHECK", "GC", "STATUS"] as const);
  const cniVersion = command === "GC" || command === "STATUS" ? "1.1.0" : r.pick(VERSIONS);
  const env: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: ctx.podNetns,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}`,
    CNI_PATH: ctx.cniPath,
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  };
  const conf: Record<string, Json> = { cniVersion, name: ctx.network, type: "weft", socket: ctx.socket };
  if (r.chance(0.3)) conf.mtu = 1400;
  if (r.chance(0.2)) conf.ipam = { type: "no-such-ipam", subnet: "10.98.0.0/24" };
  if (r.chance(0.2)) conf.dns = { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] };
  if (command === "CHECK" || (command === "DEL" && r.chance(0.5))) conf.prevResult = prevResult(ctx);
  if (command === "GC") conf["cni.dev/valid-attachments"] = [{ containerID: id, ifname: "eth0" }];
  return { env, conf };
}

const ENV_VALUES: Record<string, readonly string[]> = {
  CNI_COMMAND: ["", "add", "ADD ", "ADD\n", "ADDD", "VERSION", "DEL", "CHECK", "GC", "STATUS", "FROB", "\u00c4DD"],
  CNI_CONTAINERID: ["", "-x", ".x", "a/b", "a b", "a\u00e9", "x".repeat(300), "../../etc", "a;b"],
  CNI_NETNS: [
    "",
    "relative/ns",
    "/nonexistent/ns",
    "/etc/passwd",
    "/dev/null",
    "/run/netns",
    "/run/netns/../../etc/hostname",
    "/run/netns/wt-fz-does-not-exist",
    "//",
    "/tmp/../../etc/shadow",
  ],
  CNI_IFNAME: [
    "",
    ".",
    "..",
    "eth/0",
    "eth%d",
    "eth:0",
    "eth 0",
    "eth0-much-too-long",
    "lo",
    "wf0123456789a",
    "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
    'eth"0',
    "eth'0",
    "eth#0",
    "eth\\0",
  ],
  CNI_ARGS: [
    "",
    ";",
    "=",
    "K8S_POD_NAME",
    "K8S_POD_NAME=",
    "K8S_POD_NAMESPACE=BAD_NS;K8S_POD_NAME=x",
    "K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + "a".repeat(300),
    "IgnoreUnknown=0;FOO=bar",
    "a=b=c;;",
    "K8S_POD_NAME=../../x",
  ],
  CNI_PATH: ["", ":", "::::", "relative", "/nonexistent", "../../..", "/nonexistent:" + "x".repeat(5000)],
};

/** The environment mutated: a variable removed, set to a hostile value, or extra variables. */
function mutateEnv(r: Rng, env: Record<string, string>): { env: Record<string, string>; what: string } {
  const e = { ...env };
  const keys = Object.keys(ENV_VALUES);
  switch (r.int(4)) {
    case 0: {
      const k = r.pick(keys);
      delete e[k];
      return { env: e, what: `unset ${k}` };
    }
    case 1: {
      const k = r.pick(keys);
      e[k] = r.pick(ENV_VALUES[k]);
      return { env: e, what: `${k}=${JSON.stringify(e[k].slice(0, 40))}` };
    }
    case 2: {
      const k = r.pick(keys);
      e[k] = r.pick(EVIL_STRINGS).replaceAll("\0", "");
      return { env: e, what: `${k}=${JSON.stringify(e[k].slice(0, 40))}` };
    }
    default: {
      const n = 1 + r.int(3);
      for (let i = 0; i < n; i++)
        e[r.pick(["CNI_EXTRA", "CNI_NETNS_OVERRIDE", "K8S_POD_NAME", "FOO", "CNI_COMMAND_X", "X".repeat(200)])] = r
          .pick(EVIL_STRINGS)
          .replaceAll("\0", "");
      return { env: e, what: `${n} extra variable(s)` };
    }
  }
}

/** The plugin's stdin mutated at the value level, the byte level, or made oversized. */
function mutateStdin(r: Rng, conf: Record<string, Json>): { stdin: Buffer; what: string } {
  const p = r.int(10);
  if (p < 5) {
    const m = mutateJson(r, conf);
    return { stdin: Buffer.from(m.text), what: m.what };
  }
  if (p < 9) {
    const m = mutateBytes(r, Buffer.from(JSON.stringify(conf)));
    return { stdin: m.bytes, what: m.what };
  }
  // Oversized: a long string field (the plugin caps stdin at 1 MiB).
  const n = r.pick([900_000, 1_100_000]);
  return { stdin: Buffer.from(JSON.stringify({ ...conf, pad: "y".repeat(n) })), what: `padded with ${n} bytes` };
}

// ---- Cases ------------------------------------------------------------------------------------

/** Relative weights of the three kinds (by default mostly socket cases, which are cheap). */
export interface FuzzMix {
  line: number;
  frame: number;
  plugin: number;
}

export const DEFAULT_MIX: FuzzMix = { line: 5, frame: 2, plugin: 3 };

/** Case INDEX of run SEED: the same bytes every time. */
export function fuzzCase(seed: number, index: number, ctx: FuzzContext, mix: FuzzMix = DEFAULT_MIX): FuzzCase {
  const r = new Rng(caseSeed(seed, index));
  const id = `fz${index}`;
  const total = mix.line + mix.frame + mix.plugin;
  const x = r.int(total);
  if (x < mix.line) {
    const base = baseRequest(r, ctx, id);
    const byteLevel = r.chance(0.4);
    if (byteLevel) {
      const m = mutateBytes(r, Buffer.from(JSON.stringify(base) + "\n"));
      return { kind: "line", index, what: `${base.op}: ${m.what}`, bytes: m.bytes };
    }
    const m = mutateJson(r, base);
    return {
      kind: "line",
      index,
      what: `${base.op}: ${m.what}`,
      bytes: Buffer.from(m.text + (r.chance(0.9) ? "\n" : "")),
    };
  }
  const call = baseCall(r, ctx, id);
  if (x < mix.line + mix.frame) {
    // Framing broken: lengths that lie, a truncated frame, bytes after it, or bytes flipped.
    const good = encodeFrameBytes(call.env, Buffer.from(JSON.stringify(call.conf)));
    const head = FRAME_MAGIC.length + 1;
    const envLen = good.readUInt32BE(head);
    const k = r.int(5);
    if (k === 0) {
      const c = Buffer.from(good);
      const v = r.pick([0, 1, envLen - 1, envLen + 1, 0x7fffffff, 0xffffffff, 5 * 1024 * 1024]);
      c.writeUInt32BE(v >>> 0, r.chance(0.5) ? head : head + 4 + envLen);
      return { kind: "frame", index, what: `length field := ${v}`, bytes: c };
    }
    if (k === 1)
      return {
        kind: "frame",
        index,
        what: "bytes after the frame",
        bytes: Buffer.concat([good, r.bytes(1 + r.int(16))]),
      };
    const m = mutateBytes(r, good);
    // Keep the magic most of the time, so the mutation reaches the frame parser.
    const bytes =
      r.chance(0.8) && m.bytes.length >= head
        ? Buffer.concat([good.subarray(0, head), m.bytes.subarray(head)])
        : m.bytes;
    return { kind: "frame", index, what: `frame ${m.what}`, bytes };
  }
  const cmd = call.env.CNI_COMMAND;
  const which = r.int(3);
  let env = call.env;
  let stdin: Buffer = Buffer.from(JSON.stringify(call.conf));
  const whats: string[] = [];
  if (which !== 1) {
    const m = mutateEnv(r, env);
    env = m.env;
    whats.push(m.what);
  }
  if (which !== 0) {
    const m = mutateStdin(r, call.conf);
    stdin = m.stdin;
    whats.push(m.what);
  }
  return { kind: "plugin", index, what: `${cmd}: ${whats.join("; ")}`, env, stdin };
}

/** Cases FROM..FROM+COUNT-1 of run SEED. */
export function fuzzCases(
  seed: number,
  count: number,
  ctx: FuzzContext,
  mix: FuzzMix = DEFAULT_MIX,
  from = 0,
): FuzzCase[] {
  return Array.from({ length: count }, (_, i) => fuzzCase(seed, from + i, ctx, mix));
}

/** A short fingerprint of a case (for logs and the determinism test). */
export function caseDigest(c: FuzzCase): string {
  const parts =
    c.kind === "plugin"
      ? [JSON.stringify(Object.entries(c.env)), c.stdin.toString("base64")]
      : [c.bytes.toString("base64")];
  let h = 0x811c9dc5;
  for (const s of [c.kind, c.what, ...parts])
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}
