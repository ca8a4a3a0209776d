// The compiled plugin (dist/weft-cni) given bad input the way a broken runtime or config would:
// exact CNI error codes as JSON on stdout, non-zero exit, nothing left behind.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { createNetns, removeAllNetns, type TestNetns } from "../testlib/netns.js";
import { binarySkipReason, invoke, PLUGIN_UNDER_NODE, tempDir, type Outcome } from "../testlib/plugin-exec.js";

const skip = binarySkipReason();
const VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

interface ErrJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** Asserts a spec error: non-zero exit, JSON {cniVersion, code, msg} on stdout with `code`. */
function assertError(r: Outcome, code: number, msgPattern?: RegExp): ErrJson {
  assert.notEqual(r.code, 0, `expected a failure exit; stdout=${r.stdout}`);
  const e = r.json as ErrJson;
  assert.ok(e && typeof e === "object", `stdout is not JSON: ${r.stdout}`);
  assert.equal(e.code, code, `expected code ${code}, got ${r.stdout}`);
  assert.equal(typeof e.msg, "string");
  assert.ok(e.msg.length > 0);
  assert.ok(VERSIONS.includes(e.cniVersion), `error has cniVersion: ${r.stdout}`);
  if (msgPattern) assert.match(e.msg, msgPattern);
  return e;
}

describe("weft-cni binary: VERSION and bad input", { skip }, () => {
  let pod: TestNetns;
  const tmp = tempDir();
  // No agent listens here: the agent-down cases must not depend on /run/weft.
  const socket = `${tmp.path}/weft.sock`;
  const conf = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ cniVersion: "1.0.0", name: "weft", type: "weft", socket, ...extra });
  let env: Record<string, string | undefined>;

  before(async () => {
    pod = await createNetns("cni");
    env = {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "c0ffee01",
      CNI_NETNS: pod.path,
      CNI_IFNAME: "eth0",
      CNI_PATH: "/usr/lib/cni",
    };
  });
  after(async () => {
    await removeAllNetns();
    tmp.remove();
  });

  test("VERSION echoes the requested version and lists all supported versions", async () => {
    for (const v of VERSIONS) {
      const r = await invoke({ CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: v }));
      assert.equal(r.code, 0, r.stdout);
      assert.deepEqual(r.json, { cniVersion: v, supportedVersions: VERSIONS });
    }
    const r = await invoke({ CNI_COMMAND: "VERSION" }, "");
    assert.equal(r.code, 0);
    assert.deepEqual(r.json, { cniVersion: "1.1.0", supportedVersions: VERSIONS });
  });

  test("VERSION does not wait for EOF on an idle stdin (skel ignores VERSION's stdin too)", async () => {
    const r = await invoke({ CNI_COMMAND: "VERSION" }, "", undefined, { holdStdinOpenMs: 20_000 });
    assert.equal(r.code, 0);
    assert.ok(r.exitedBeforeStdinClosed, "answered while stdin was still open");
    assert.deepEqual(r.json, { cniVersion: "1.1.0", supportedVersions: VERSIONS });
  });

  test("malformed JSON is code 6", async () => {
    for (const input of ["{", '{"cniVersion": "1.0.0",', "not json", "[]"]) assertError(await invoke(env, input), 6);
  });

  test("4 MB of random bytes on stdin is code 6, promptly", async () => {
    const r = await invoke(env, randomBytes(4 * 1024 * 1024));
    assertError(r, 6, /larger than/);
  });

  test("missing or unknown CNI_COMMAND is code 4 naming it", async () => {
    assertError(await invoke({ ...env, CNI_COMMAND: undefined }, conf()), 4, /CNI_COMMAND/);
    assertError(await invoke({ ...env, CNI_COMMAND: "ATTACH" }, conf()), 4, /CNI_COMMAND/);
  });

  test("each required variable missing is code 4 naming it", async () => {
    for (const v of ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]) {
      const e = assertError(await invoke({ ...env, [v]: undefined }, conf()), 4, new RegExp(v));
      assert.equal(e.cniVersion, "1.0.0", "the error speaks the config's version");
    }
    assertError(
      await invoke({ CNI_COMMAND: "DEL", CNI_NETNS: pod.path, CNI_IFNAME: "eth0" }, conf()),
      4,
      /CNI_CONTAINERID/,
    );
    assertError(
      await invoke({ CNI_COMMAND: "GC" }, conf({ cniVersion: "1.1.0", "cni.dev/valid-attachments": [] })),
      4,
      /CNI_PATH/,
    );
  });

  test("invalid variables are code 4 naming them", async () => {
    const cases: Array<[string, string, RegExp]> = [
      ["CNI_CONTAINERID", "-bad", /CNI_CONTAINERID/],
      ["CNI_CONTAINERID", "a b", /CNI_CONTAINERID/],
      ["CNI_IFNAME", "eth/0", /CNI_IFNAME/],
      ["CNI_IFNAME", "a".repeat(16), /CNI_IFNAME/],
      ["CNI_IFNAME", "eth:0", /CNI_IFNAME/],
      ["CNI_IFNAME", "eth 0", /CNI_IFNAME/],
      ["CNI_IFNAME", "..", /CNI_IFNAME/],
      ["CNI_NETNS", "relative/path", /CNI_NETNS/],
      ["CNI_ARGS", "K8S_POD_NAME", /CNI_ARGS/],
      ["CNI_PATH", "bin", /CNI_PATH/],
    ];
    for (const [k, v, re] of cases) assertError(await invoke({ ...env, [k]: v }, conf()), 4, re);
  });

  test("an unknown or missing cniVersion is code 1", async () => {
    for (const v of ["0.2.0", "1.2.0", "2.0.0", "x"]) assertError(await invoke(env, conf({ cniVersion: v })), 1);
    assertError(await invoke(env, JSON.stringify({ name: "weft", type: "weft", socket })), 1);
  });

  test("CHECK below 0.4.0, GC and STATUS below 1.1.0 are code 1", async () => {
    assertError(
      await invoke(
        { ...env, CNI_COMMAND: "CHECK" },
        conf({ cniVersion: "0.3.1", prevResult: { cniVersion: "0.3.1" } }),
      ),
      1,
      /CHECK/,
    );
    assertError(await invoke({ CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.0.0" })), 1, /STATUS/);
    assertError(
      await invoke(
        { CNI_COMMAND: "GC", CNI_PATH: "/usr/lib/cni" },
        conf({ cniVersion: "1.0.0", "cni.dev/valid-attachments": [] }),
      ),
      1,
      /GC/,
    );
  });

  test("missing name or type, bad mtu are code 7", async () => {
    assertError(await invoke(env, JSON.stringify({ cniVersion: "1.0.0", type: "weft", socket })), 7, /name/);
    assertError(await invoke(env, JSON.stringify({ cniVersion: "1.0.0", name: "weft", socket })), 7, /type/);
    assertError(await invoke(env, conf({ mtu: 20 })), 7, /mtu/);
    assertError(await invoke(env, conf({ ipam: { subnet: "10.0.0.0/24" } })), 7, /ipam/);
  });

  test("a netns that does not exist is code 3 on ADD and CHECK", async () => {
    const gone = "/run/netns/wt-does-not-exist-" + randomBytes(4).toString("hex");
    assertError(await invoke({ ...env, CNI_NETNS: gone }, conf()), 3, /does not exist/);
    assertError(
      await invoke({ ...env, CNI_COMMAND: "CHECK", CNI_NETNS: gone }, conf({ prevResult: { cniVersion: "1.0.0" } })),
      3,
    );
  });

  test("agent down: ADD and CHECK are code 11 (try again), DEL is queued and succeeds, STATUS is code 50", async () => {
    const add = assertError(await invoke(env, conf()), 11, new RegExp(socket.replace(/[.]/g, "\\.")));
    assert.match(add.details ?? "", /agent/);
    // DEL does not need the netns or the agent: queued beside the socket for the agent to replay.
    const del = await invoke({ ...env, CNI_COMMAND: "DEL", CNI_NETNS: undefined }, conf());
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal(del.stdout, "");
    assert.equal(readdirSync(`${tmp.path}/del-queue`).length, 1, "one queued DEL");
    rmSync(`${tmp.path}/del-queue`, { recursive: true });
    assertError(await invoke({ ...env, CNI_COMMAND: "CHECK" }, conf({ prevResult: { cniVersion: "1.0.0" } })), 11);
    assertError(await invoke({ CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.1.0" })), 50, /not available/);
    assertError(
      await invoke(
        { CNI_COMMAND: "GC", CNI_PATH: "/usr/lib/cni" },
        conf({ cniVersion: "1.1.0", "cni.dev/valid-attachments": [] }),
      ),
      11,
    );
  });

  test("agent down with host-local IPAM: the reservation is rolled back", async () => {
    const data = tempDir("weft-hl-");
    try {
      const c = conf({ ipam: { type: "host-local", subnet: "10.250.7.0/24", dataDir: data.path } });
      assertError(await invoke(env, c), 11);
      // host-local keeps one file per reserved address (plus last_reserved_ip and a lock).
      const net = `${data.path}/weft`;
      assert.ok(existsSync(net), "host-local ran and reserved an address first");
      const files = readdirSync(net);
      assert.ok(
        files.some((f) => f.startsWith("last_reserved_ip")),
        `host-local reserved an address: ${files.join(" ")}`,
      );
      assert.deepEqual(
        files.filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)),
        [],
        "no address stays reserved after the failed ADD",
      );
    } finally {
      data.remove();
    }
  });

  test("the same plugin runs under plain node (node dist/plugin/main.js) with the same answers", async () => {
    const v = await invoke({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"0.4.0"}', PLUGIN_UNDER_NODE);
    assert.equal(v.code, 0, v.stderr);
    assert.deepEqual(v.json, { cniVersion: "0.4.0", supportedVersions: VERSIONS });
    assertError(await invoke({ ...env, CNI_IFNAME: "x".repeat(16) }, conf(), PLUGIN_UNDER_NODE), 4, /CNI_IFNAME/);
    assertError(await invoke({ CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.1.0" }), PLUGIN_UNDER_NODE), 50);
    assertError(await invoke(env, randomBytes(4 * 1024 * 1024), PLUGIN_UNDER_NODE), 6);
  });

  test("nothing is left behind in the socket directory", () => {
    assert.deepEqual(tmp.entries(), []);
  });
});
