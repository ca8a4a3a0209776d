import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseCniArgs, parseEnv, REQUIRED_ENV, validateIfname } from "./env.js";
import { CniError } from "./errors.js";

const full = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "abc123",
  CNI_NETNS: "/run/netns/x",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
};

function envError(env: Record<string, string | undefined>): CniError {
  try {
    parseEnv(env);
  } catch (e) {
    assert.ok(e instanceof CniError);
    return e;
  }
  assert.fail(`expected ${JSON.stringify(env)} to be rejected`);
}

describe("CNI environment", () => {
  test("a complete ADD environment parses", () => {
    const env = parseEnv({ ...full, CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0" });
    assert.equal(env.command, "ADD");
    assert.equal(env.containerId, "abc123");
    assert.equal(env.netns, "/run/netns/x");
    assert.equal(env.ifname, "eth0");
    assert.deepEqual(env.path, ["/opt/cni/bin", "/usr/lib/cni"]);
    assert.deepEqual(env.args, { IgnoreUnknown: "1", K8S_POD_NAMESPACE: "default", K8S_POD_NAME: "web-0" });
  });

  test("missing or unknown CNI_COMMAND is code 4 naming CNI_COMMAND", () => {
    for (const c of [undefined, "", "add", "DELETE"]) {
      const e = envError({ ...full, CNI_COMMAND: c });
      assert.equal(e.code, 4);
      assert.match(e.msg, /CNI_COMMAND/);
    }
  });

  test("each variable a verb requires is named when missing (spec 1.1.0 lists)", () => {
    for (const [cmd, vars] of Object.entries(REQUIRED_ENV)) {
      for (const v of vars) {
        const e = envError({ ...full, CNI_COMMAND: cmd, [v]: undefined });
        assert.equal(e.code, 4);
        assert.match(e.msg, new RegExp(v), `${cmd} without ${v}: ${e.msg}`);
      }
    }
    assert.deepEqual([...REQUIRED_ENV.DEL], ["CNI_CONTAINERID", "CNI_IFNAME"], "DEL works without CNI_NETNS");
    assert.deepEqual([...REQUIRED_ENV.GC], ["CNI_PATH"]);
    assert.deepEqual([...REQUIRED_ENV.STATUS], []);
  });

  test("DEL without CNI_NETNS, STATUS with only CNI_COMMAND, GC with CNI_PATH all parse", () => {
    assert.equal(parseEnv({ ...full, CNI_COMMAND: "DEL", CNI_NETNS: undefined }).netns, undefined);
    assert.equal(parseEnv({ CNI_COMMAND: "STATUS" }).command, "STATUS");
    assert.deepEqual(parseEnv({ CNI_COMMAND: "GC", CNI_PATH: "/usr/lib/cni" }).path, ["/usr/lib/cni"]);
  });

  test("container IDs follow the spec's charset", () => {
    for (const ok of ["a", "0abc", "abc_def.ghi-1", "f".repeat(64)])
      assert.equal(parseEnv({ ...full, CNI_CONTAINERID: ok }).containerId, ok);
    for (const bad of ["-abc", "_abc", ".abc", "ab c", "ab/c", "ab;c", "äbc"]) {
      const e = envError({ ...full, CNI_CONTAINERID: bad });
      assert.equal(e.code, 4);
      assert.match(e.msg, /CNI_CONTAINERID/);
    }
  });

  test("interface names: <=15 bytes, not . or .., no '/', ':', whitespace, quotes, '#' or '\\'", () => {
    for (const ok of ["eth0", "a", "x".repeat(15), "net1.100"]) assert.equal(validateIfname(ok), ok);
    for (const bad of [
      "x".repeat(16),
      "é".repeat(8),
      ".",
      "..",
      "eth/0",
      "eth:0",
      "eth 0",
      "eth\t0",
      "eth\n0",
      'eth"0',
      "eth'0",
      "eth#0",
      "eth\\0",
      "eth%d",
    ]) {
      const e = envError({ ...full, CNI_IFNAME: bad });
      assert.equal(e.code, 4, bad);
      assert.match(e.msg, /CNI_IFNAME/);
    }
  });

  test("CNI_NETNS must be an absolute path", () => {
    for (const bad of ["run/netns/x", "/run/../etc/x", "/run/netns//x"]) {
      const e = envError({ ...full, CNI_NETNS: bad });
      assert.equal(e.code, 4);
      assert.match(e.msg, /CNI_NETNS/);
    }
  });

  test("CNI_ARGS: K=V;K=V, a trailing ';' is fine, a pair without '=' is code 4", () => {
    assert.deepEqual(parseCniArgs("A=1;B=x=y;"), { A: "1", B: "x=y" });
    assert.deepEqual(parseCniArgs("A="), { A: "" });
    for (const bad of ["A", "=1", "A=1;B", "A B=1"]) {
      const e = envError({ ...full, CNI_ARGS: bad });
      assert.equal(e.code, 4);
      assert.match(e.msg, /CNI_ARGS/);
    }
  });

  test("CNI_PATH entries must be absolute", () => {
    const e = envError({ ...full, CNI_PATH: "/usr/lib/cni:bin" });
    assert.equal(e.code, 4);
    assert.match(e.msg, /CNI_PATH/);
  });
});
