// The agent socket's limits, on real unix sockets: first the server with small limits (so each is
// reached in milliseconds), then a real agent with its defaults. Over a limit a client gets a
// clear answer and its connection closes; other clients are served all along.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { callAgent } from "../agent-api/client.js";
import { encodeFrame, FRAME_MAGIC } from "../agent-api/frame.js";
import { MAX_CONFIG_BYTES, MAX_CONNECTIONS, REQUEST_READ_TIMEOUT_MS } from "../agent-api/limits.js";
import type { AgentRequest, AgentResponse } from "../agent-api/schema.js";
import { startTestAgent, type TestAgent } from "../testlib/agent.js";
import { createNetns, removeAllNetns } from "../testlib/netns.js";
import { listen, UnsafeSocketDir, type ServerLimits } from "./server.js";

after(removeAllNetns);

const work = mkdtempSync(join(tmpdir(), "weft-server-"));
after(() => rmSync(work, { recursive: true, force: true }));
let seq = 0;

/** A server whose only op is status: the socket handling is what is under test. */
async function serveStatus(limits: Partial<ServerLimits> = {}): Promise<{ server: Server; socket: string }> {
  const socket = join(work, `d${++seq}`, "agent.sock");
  const handle = (req: AgentRequest): Promise<AgentResponse> =>
    Promise.resolve(req.op === "status" ? { ok: true } : { ok: false, code: 4, msg: `${req.op} is not served here` });
  const server = await listen({ path: socket, log: pino({ level: "silent" }), handle, limits });
  return { server, socket };
}

const close = (s: Server) => new Promise<void>((r) => s.close(() => r()));

interface RawAnswer {
  bytes: Buffer;
  closedBy: "server";
}

/** Opens a connection and collects what the server sends until it closes the connection. */
function open(socket: string): { sock: Socket; answer: Promise<RawAnswer>; connected: Promise<void> } {
  const sock = connect(socket);
  const chunks: Buffer[] = [];
  const connected = new Promise<void>((r, j) => {
    sock.once("connect", () => r());
    sock.once("error", j);
  });
  const answer = new Promise<RawAnswer>((resolve, reject) => {
    sock.on("data", (c: Buffer) => chunks.push(c));
    sock.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE" && e.code !== "ECONNRESET") reject(e);
    });
    sock.on("close", () => resolve({ bytes: Buffer.concat(chunks), closedBy: "server" }));
  });
  return { sock, answer, connected };
}

function jsonAnswer(a: RawAnswer): AgentResponse {
  return JSON.parse(a.bytes.toString("utf8").split("\n")[0]) as AgentResponse;
}

/** A frame answer: exit code and the CNI error JSON the forwarder would print. */
function frameAnswer(a: RawAnswer): { exitCode: number; out: { cniVersion: string; code: number; msg: string } } {
  assert.equal(a.bytes.subarray(0, 8).toString(), FRAME_MAGIC, a.bytes.toString());
  return {
    exitCode: a.bytes.readInt32BE(8),
    out: JSON.parse(a.bytes.subarray(16).toString("utf8")) as { cniVersion: string; code: number; msg: string },
  };
}

const statusOk = async (socket: string) => {
  const r = await callAgent(socket, { op: "status", network: "weft" }, 5000);
  assert.ok(r.ok, JSON.stringify(r));
};

/** A frame header that announces `stdinLen` bytes of stdin (the bytes themselves need not follow). */
function frameHead(stdinLen: number): Buffer {
  const b = Buffer.alloc(9 + 4 + 4);
  b.write(FRAME_MAGIC + "\n", 0, "latin1");
  b.writeUInt32BE(0, 9);
  b.writeUInt32BE(stdinLen, 13);
  return b;
}

/** Over the limits: the shared tests, run against the small-limit server and the real agent. */
function limitCases(get: () => { socket: string; requestTimeoutMs: number; maxConnections: number }) {
  test("an oversize JSON request gets a decode error (6) naming the cap, the connection closes, the next call is served", async () => {
    const { socket } = get();
    const c = open(socket);
    await c.connected;
    // Written without waiting: the server may answer and close before all of it is sent.
    c.sock.write(`{"op":"status","pad":"${"x".repeat(MAX_CONFIG_BYTES + 128 * 1024)}"}\n`);
    const r = jsonAnswer(await c.answer);
    assert.ok(!r.ok && r.code === 6 && /larger than \d+ bytes/.test(r.msg), JSON.stringify(r));
    await statusOk(socket);
  });

  test("a frame announcing more stdin than the plugin accepts gets a spec CNI error (6) as the plugin's answer", async () => {
    const { socket } = get();
    const c = open(socket);
    await c.connected;
    c.sock.write(frameHead(MAX_CONFIG_BYTES + 1));
    const a = frameAnswer(await c.answer);
    assert.equal(a.exitCode, 1);
    assert.equal(a.out.code, 6);
    assert.equal(a.out.cniVersion, "1.1.0");
    assert.match(a.out.msg, new RegExp(`stdin larger than ${MAX_CONFIG_BYTES} bytes`));
    await statusOk(socket);
  });

  test("a slowloris client that never finishes its frame is cut off at the read deadline; others are served meanwhile", async () => {
    const { socket, requestTimeoutMs } = get();
    const c = open(socket);
    await c.connected;
    const t0 = Date.now();
    // A frame that promises 1000 bytes of stdin and sends one every 20 ms: never idle, never done.
    c.sock.write(frameHead(1000));
    const drip = setInterval(() => {
      if (!c.sock.destroyed) c.sock.write("x");
    }, 20);
    try {
      let served = 0;
      let closed = false;
      void c.answer.then(() => (closed = true));
      while (!closed) {
        await statusOk(socket);
        served++;
        await new Promise((r) => setTimeout(r, 50));
      }
      const a = frameAnswer(await c.answer);
      assert.equal(a.out.code, 6);
      assert.match(a.out.msg, /no complete request within/);
      assert.ok(Date.now() - t0 >= requestTimeoutMs - 50, `cut after ${Date.now() - t0} ms`);
      assert.ok(served > 0);
    } finally {
      clearInterval(drip);
      c.sock.destroy();
    }
  });

  test("connections past the cap are answered 'try again later' (11); idle ones are closed at the deadline, then calls are served", async () => {
    const { socket, maxConnections } = get();
    const idle = Array.from({ length: maxConnections }, () => open(socket));
    try {
      await Promise.all(idle.map((c) => c.connected));
      // The server counts a connection when it accepts it: wait until one over the cap is refused.
      let busy: AgentResponse | undefined;
      for (let i = 0; i < 200 && !busy; i++) {
        const r = await callAgent(socket, { op: "status" }, 5000);
        if (!r.ok && r.code === 11) busy = r;
        else await new Promise((res) => setTimeout(res, 10));
      }
      assert.ok(busy && !busy.ok && /serving \d+ connections already/.test(busy.msg), JSON.stringify(busy));
      // Each idle connection is closed by the server with an answer saying why: the read deadline,
      // or "busy" for one accepted while an earlier test's connection was still being closed.
      for (const c of idle) {
        const r = jsonAnswer(await c.answer);
        assert.ok(!r.ok && /no complete request within|serving \d+ connections already/.test(r.msg), JSON.stringify(r));
      }
      // The server counts a connection gone once both sides closed: soon after, calls are served.
      const until = Date.now() + 5000;
      let last: AgentResponse | undefined;
      while (!(last = await callAgent(socket, { op: "status", network: "weft" }, 5000)).ok && Date.now() < until) {
        await new Promise((res) => setTimeout(res, 20));
      }
      assert.ok(last.ok, JSON.stringify(last));
    } finally {
      for (const c of idle) c.sock.destroy();
    }
  });
}

describe("agent socket server, small limits", () => {
  const limits = { maxConnections: 8, requestTimeoutMs: 400 };
  let s: { server: Server; socket: string };
  before(async () => {
    s = await serveStatus(limits);
  });
  after(async () => {
    if (s) await close(s.server);
  });

  limitCases(() => ({ socket: s.socket, ...limits }));

  test("a request that is not JSON, and one that fails validation, get their errors", async () => {
    const c = open(s.socket);
    await c.connected;
    c.sock.end("not json\n");
    const r = jsonAnswer(await c.answer);
    assert.ok(!r.ok && r.code === 6, JSON.stringify(r));
    const bad = await callAgent(s.socket, { op: "del", network: "weft", containerId: "-bad", ifname: "eth0" }, 5000);
    assert.ok(!bad.ok && bad.code === 4 && /containerId/.test(bad.msg), JSON.stringify(bad));
  });

  test("a complete frame sent in many small pieces is served", async () => {
    const c = open(s.socket);
    await c.connected;
    const bytes = encodeFrame({
      env: { CNI_COMMAND: "VERSION", PATH: "/bin" },
      stdin: Buffer.from('{"cniVersion":"1.0.0"}'),
    });
    for (let i = 0; i < bytes.length; i += 3) c.sock.write(bytes.subarray(i, i + 3));
    const a = await c.answer;
    assert.equal(a.bytes.subarray(0, 8).toString(), FRAME_MAGIC);
    assert.equal(a.bytes.readInt32BE(8), 0);
    assert.ok(
      (JSON.parse(a.bytes.subarray(16).toString()) as { supportedVersions: string[] }).supportedVersions.includes(
        "1.0.0",
      ),
    );
  });
});

describe("agent socket directory", () => {
  test("a missing directory is made 0700 and the socket is 0600", async () => {
    const s = await serveStatus();
    try {
      assert.equal(statSync(join(s.socket, "..")).mode & 0o777, 0o700);
      assert.equal(statSync(s.socket).mode & 0o777, 0o600);
    } finally {
      await close(s.server);
    }
  });

  for (const [what, prepare, message] of [
    ["open to group and others (0755)", (d: string) => chmodSync(d, 0o755), /mode is 0755.*chmod 700/],
    ["group-readable (0740)", (d: string) => chmodSync(d, 0o740), /mode is 0740/],
    [
      "owned by another user",
      (d: string) => chownSync(d, 65534, 65534),
      /owned by uid 65534, not by the agent's uid 0/,
    ],
  ] as const) {
    test(`an existing directory ${what} is refused, and nothing is made in it`, async () => {
      const dir = join(work, `refuse${++seq}`);
      mkdirSync(dir, { mode: 0o700 });
      prepare(dir);
      const socket = join(dir, "agent.sock");
      await assert.rejects(
        listen({ path: socket, log: pino({ level: "silent" }), handle: () => Promise.resolve({ ok: true }) }),
        (e: unknown) => e instanceof UnsafeSocketDir && message.test(e.message),
      );
      assert.throws(() => statSync(socket), /ENOENT/);
    });
  }

  test("a file where the directory should be is refused", async () => {
    const file = join(work, `file${++seq}`);
    writeFileSync(file, "");
    await assert.rejects(
      listen({
        path: join(file, "agent.sock"),
        log: pino({ level: "silent" }),
        handle: () => Promise.resolve({ ok: true }),
      }),
      /not a directory/,
    );
  });
});

describe("a real agent's socket, default limits", () => {
  let agent: TestAgent;
  before(async () => {
    const host = await createNetns("host");
    agent = await startTestAgent({ netns: host.path, podCidr: "10.79.0.0/24" });
  });
  after(async () => {
    await agent?.cleanup();
  });

  limitCases(() => ({
    socket: agent.socket,
    requestTimeoutMs: REQUEST_READ_TIMEOUT_MS,
    maxConnections: MAX_CONNECTIONS,
  }));

  test("the agent is still running and serving after all of it", async () => {
    assert.doesNotThrow(() => process.kill(agent.pid, 0));
    await statusOk(agent.socket);
  });

  test("an agent whose socket directory is open to others refuses to start", async () => {
    const host = await createNetns("host");
    const dir = join(work, `agentdir${++seq}`);
    mkdirSync(join(dir, "run"), { recursive: true, mode: 0o755 });
    chmodSync(join(dir, "run"), 0o755);
    await assert.rejects(
      startTestAgent({
        netns: host.path,
        podCidr: "10.79.1.0/24",
        stateDir: join(dir, "state"),
        socket: join(dir, "run", "agent.sock"),
      }),
      /refusing the agent socket directory .*mode is 0755/,
    );
  });
});
