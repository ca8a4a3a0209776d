// The installed plugin is a native forwarder (src/plugin/forwarder.c) that hands each call to the
// agent, which runs the TypeScript plugin in process; when it cannot, it execs the full plugin
// installed beside it (weft-full). These tests tell the two paths apart by removing weft-full:
// what still works then was served by the agent through the frame protocol.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { spawn } from "node:child_process";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binarySkipReason, invoke, PLUGIN_BIN } from "../../testlib/plugin-exec.js";
import { invokePlugin, resultAddresses, type CniErrorOut, type PluginCall } from "../../testlib/plugin.js";
import { addressesIn, e2eSkipReason, Host, k8sArgs } from "./fixture.js";

const skip = e2eSkipReason() ?? false;

describe("the native plugin forwarder", { skip }, () => {
  let h: Host;
  const full = () => `${h.plugin}-full`;
  const hideFull = () => renameSync(full(), `${full()}.hidden`);
  const restoreFull = () => {
    if (existsSync(`${full()}.hidden`)) renameSync(`${full()}.hidden`, full());
  };
  before(async () => {
    h = await Host.open({ podCidr: "10.248.0.0/24" });
  });
  after(async () => {
    await h?.close();
  });
  const call = (command: PluginCall["command"], id: string, netns?: string): PluginCall => ({
    command,
    containerId: id,
    ...(netns ? { netns } : {}),
    ifname: "eth0",
    args: k8sArgs(id),
    path: h.cniPath,
    runIn: h.ns,
  });

  test("install-cni puts the full plugin beside the forwarder", () => {
    assert.ok(existsSync(h.plugin), h.plugin);
    assert.ok(existsSync(full()), full());
  });

  test("with only the forwarder installed, ADD, CHECK, STATUS, GC and DEL are served by the agent", async () => {
    const pod = await h.pod("f");
    hideFull();
    try {
      const add = await invokePlugin(h.plugin, call("ADD", "fwd-1", pod.path), h.weftConf("1.1.0"));
      assert.equal(add.code, 0, add.stdout + add.stderr);
      const [addr] = resultAddresses(add.json);
      assert.deepEqual(await addressesIn(pod.path, "eth0"), [addr.split("/")[0]]);
      const check = await invokePlugin(
        h.plugin,
        call("CHECK", "fwd-1", pod.path),
        h.weftConf("1.1.0", { prevResult: add.json }),
      );
      assert.equal(check.code, 0, check.stdout);
      const status = await invokePlugin(h.plugin, { command: "STATUS", runIn: h.ns }, h.weftConf("1.1.0"));
      assert.equal(status.code, 0, status.stdout);
      const gc = await invokePlugin(
        h.plugin,
        { command: "GC", path: h.cniPath, runIn: h.ns },
        h.weftConf("1.1.0", { "cni.dev/valid-attachments": [{ containerID: "fwd-1", ifname: "eth0" }] }),
      );
      assert.equal(gc.code, 0, gc.stdout);
      // An older cniVersion gets its own result shape from the in-agent plugin, too.
      const del = await invokePlugin(h.plugin, call("DEL", "fwd-1", pod.path), h.weftConf("0.3.1"));
      assert.equal(del.code, 0, del.stdout);
      assert.deepEqual(await addressesIn(pod.path, "eth0").catch(() => []), []);
    } finally {
      restoreFull();
    }
  });

  test("errors from the in-agent plugin are spec JSON in the config's version, exit code 1", async () => {
    hideFull();
    try {
      const version = await invokePlugin(h.plugin, call("ADD", "fwd-2", "/run/netns/wt-none"), h.weftConf("9.9.9"));
      assert.equal(version.code, 1);
      assert.equal((version.json as CniErrorOut).code, 1, version.stdout);
      const gone = await invokePlugin(h.plugin, call("ADD", "fwd-2", "/run/netns/wt-no-such-ns"), h.weftConf("0.4.0"));
      assert.equal(gone.code, 1);
      assert.deepEqual(
        { v: (gone.json as CniErrorOut).cniVersion, code: (gone.json as CniErrorOut).code },
        { v: "0.4.0", code: 3 },
      );
    } finally {
      restoreFull();
    }
  });

  test("stdin over 1 MiB goes to the full plugin, which refuses it with code 6", async () => {
    const big = { ...h.weftConf("1.0.0"), pad: "x".repeat(2 * 1024 * 1024) };
    const r = await invokePlugin(h.plugin, call("ADD", "fwd-3", "/run/netns/wt-none"), big);
    assert.equal(r.code, 1);
    assert.equal((r.json as CniErrorOut).code, 6, r.stdout);
  });

  test("VERSION is answered by the full plugin", async () => {
    const r = await invokePlugin(h.plugin, { command: "VERSION", runIn: h.ns }, { cniVersion: "1.0.0" });
    assert.equal(r.code, 0);
    assert.ok((r.json as { supportedVersions: string[] }).supportedVersions.includes("1.1.0"));
  });

  test("agent down: the full plugin answers ADD with 11 and STATUS with 50; without it, code 5 says what is missing", async () => {
    await h.stopAgent();
    try {
      const pod = await h.pod("f");
      const add = await invokePlugin(h.plugin, call("ADD", "fwd-4", pod.path), h.weftConf("1.0.0"));
      assert.equal((add.json as CniErrorOut).code, 11, add.stdout);
      const st = await invokePlugin(h.plugin, { command: "STATUS", runIn: h.ns }, h.weftConf("1.1.0"));
      assert.equal((st.json as CniErrorOut).code, 50, st.stdout);
      hideFull();
      try {
        const lost = await invokePlugin(h.plugin, call("ADD", "fwd-4", pod.path), h.weftConf("1.0.0"));
        assert.equal(lost.code, 1);
        assert.equal((lost.json as CniErrorOut).code, 5);
        assert.match((lost.json as CniErrorOut).msg, /cannot run the plugin beside/);
      } finally {
        restoreFull();
      }
    } finally {
      await h.startAgent();
    }
  });
});

// A wedged agent: it accepts connections (and reads what is sent) but never answers. The
// forwarder must answer the runtime itself within its bound, not hang it.
describe("the native plugin forwarder and a wedged agent", { skip: binarySkipReason() }, () => {
  let dir: string;
  let socket: string;
  let server: Server;
  const conns: Socket[] = [];
  let accepted = 0;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-wedged-"));
    socket = join(dir, "agent.sock");
    // allowHalfOpen, as the real agent: the forwarder half-closes after its request.
    server = createServer({ allowHalfOpen: true }, (c) => {
      accepted++;
      conns.push(c);
      c.resume();
    });
    await new Promise<void>((r) => server.listen(socket, r));
  });
  after(async () => {
    for (const c of conns) c.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  const vars = (command: string, timeoutMs?: number) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: "wedged-1",
    CNI_NETNS: "/proc/self/ns/net",
    CNI_IFNAME: "eth0",
    CNI_PATH: "/usr/lib/cni",
    ...(timeoutMs !== undefined ? { WEFT_FORWARD_TIMEOUT_MS: String(timeoutMs) } : {}),
  });
  const conf = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ cniVersion: "0.4.0", name: "weft", type: "weft", socket, ...extra });

  /** Runs the forwarder; returns its outcome, how long it took and how many connections the agent saw. */
  async function run(v: Record<string, string>, input: string) {
    const before = accepted;
    const t0 = Date.now();
    const r = await invoke(v, input, PLUGIN_BIN);
    return { ...r, ms: Date.now() - t0, connections: accepted - before, err: r.json as CniErrorOut };
  }

  test("ADD: code 11 as spec JSON in the config's version, exit 1, at the bound WEFT_FORWARD_TIMEOUT_MS sets", async () => {
    const r = await run(vars("ADD", 400), conf());
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.deepEqual({ v: r.err.cniVersion, code: r.err.code }, { v: "0.4.0", code: 11 }, r.stdout);
    assert.match(r.err.msg, /did not answer within 400 ms/);
    assert.ok(r.ms >= 400, `answered after ${r.ms} ms`);
    // One try only: the full plugin is not run to wait all over again.
    assert.equal(r.connections, 1);
  });

  test("STATUS: code 50 (plugin not available), as the TypeScript plugin answers a timeout", async () => {
    const r = await run(vars("STATUS", 300), conf());
    assert.equal(r.code, 1);
    assert.equal(r.err.code, 50, r.stdout);
  });

  test("an agent whose event loop is stuck, its accept queue full: connect is bounded too, code 11", async () => {
    // A child that listens (backlog 1) and then blocks its event loop: it never accepts again.
    const wedged = join(dir, "stuck.sock");
    const child = spawn(
      process.execPath,
      [
        "-e",
        `
      require("node:net").createServer(() => {}).listen({ path: ${JSON.stringify(wedged)}, backlog: 1 }, () => {
        process.stdout.write("listening\\n");
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
      });`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const fillers: Socket[] = [];
    try {
      await new Promise<void>((r, j) => {
        child.stdout.once("data", () => r());
        child.once("exit", (c) => j(new Error(`child exited ${c}`)));
      });
      // Fill the accept queue: the kernel refuses a non-blocking connect (EAGAIN) once it is full.
      let full = false;
      while (!full && fillers.length < 64) {
        const c = connect(wedged);
        fillers.push(c);
        full = await new Promise<boolean>((r) => {
          c.once("connect", () => r(false));
          c.once("error", (e: NodeJS.ErrnoException) => r(e.code === "EAGAIN"));
        });
      }
      assert.ok(full, "the stuck agent's accept queue did not fill");
      const r = await run(
        vars("ADD", 400),
        JSON.stringify({ cniVersion: "1.0.0", name: "weft", type: "weft", socket: wedged }),
      );
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.deepEqual({ v: r.err.cniVersion, code: r.err.code }, { v: "1.0.0", code: 11 }, r.stdout);
      assert.ok(r.ms < 20_000, `answered after ${r.ms} ms`);
    } finally {
      for (const c of fillers) c.destroy();
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  test("without the variable, the bound is the config's timeoutMs plus 10 s of slack", async () => {
    const r = await run(vars("DEL"), conf({ timeoutMs: 1 }));
    assert.equal(r.code, 1);
    assert.equal(r.err.code, 11, r.stdout);
    assert.match(r.err.msg, /did not answer within 10001 ms/);
    assert.ok(r.ms >= 10_001 && r.ms < 40_000, `answered after ${r.ms} ms`);
  });
});
