import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { decodeNetConf, DEFAULT_SOCKET, errorVersion, validateNetConf } from "./config.js";
import { CniError } from "./errors.js";
import type { CniCommand } from "./types.js";

const base = { cniVersion: "1.0.0", name: "weft", type: "weft" };

function confError(raw: Record<string, unknown>, command: CniCommand = "ADD"): CniError {
  try {
    validateNetConf(raw, command);
  } catch (e) {
    assert.ok(e instanceof CniError, String(e));
    return e;
  }
  assert.fail(`expected ${JSON.stringify(raw)} to be rejected`);
}

describe("network configuration", () => {
  test("a minimal config gets the default socket and no delegated IPAM", () => {
    const c = validateNetConf({ ...base }, "ADD");
    assert.equal(c.cniVersion, "1.0.0");
    assert.equal(c.name, "weft");
    assert.equal(c.socket, DEFAULT_SOCKET);
    assert.equal(c.ipam, undefined);
    assert.equal(c.mtu, undefined);
  });

  test("weft's own settings and a delegated IPAM section are read", () => {
    const c = validateNetConf(
      {
        ...base,
        socket: "/tmp/x/weft.sock",
        mtu: 1450,
        timeoutMs: 2000,
        ipam: { type: "host-local", subnet: "10.9.0.0/24" },
        dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      },
      "ADD",
    );
    assert.equal(c.socket, "/tmp/x/weft.sock");
    assert.equal(c.mtu, 1450);
    assert.equal(c.timeoutMs, 2000);
    assert.deepEqual(c.ipam, { type: "host-local", subnet: "10.9.0.0/24" });
    assert.deepEqual(c.dns, { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] });
  });

  test('"ipam": {} means the agent\'s own IPAM', () => {
    assert.equal(validateNetConf({ ...base, ipam: {} }, "ADD").ipam, undefined);
  });

  test("unknown fields added by runtimes are tolerated", () => {
    const c = validateNetConf(
      { ...base, runtimeConfig: { portMappings: [] }, args: { cni: {} }, "cni.dev/foo": 1, somethingElse: true },
      "ADD",
    );
    assert.equal(c.name, "weft");
  });

  test("malformed JSON, non-objects are decode failures (code 6)", () => {
    for (const text of ["", "{", "nul", "[1,2]", "42", '"x"', "null", "\u0000\u00ff garbage"]) {
      assert.throws(
        () => decodeNetConf(text),
        (e: unknown) => e instanceof CniError && e.code === 6,
        text,
      );
    }
    assert.deepEqual(decodeNetConf(JSON.stringify(base)), base);
  });

  test("a whole conflist on stdin is code 2 naming the field", () => {
    const e = confError({ cniVersion: "1.0.0", name: "weft", plugins: [{ type: "weft" }] });
    assert.equal(e.code, 2);
    assert.match(e.msg, /"plugins"/);
  });

  test("missing or invalid name/type is code 7", () => {
    for (const raw of [
      { cniVersion: "1.0.0", type: "weft" },
      { ...base, name: "" },
      { ...base, name: "-bad" },
      { ...base, name: "a/b" },
      { ...base, name: 7 },
      { cniVersion: "1.0.0", name: "weft" },
      { ...base, type: "" },
      { ...base, type: "../weft" },
      { ...base, type: "a\\b" },
    ]) {
      const e = confError(raw);
      assert.equal(e.code, 7, JSON.stringify(raw));
    }
    assert.match(confError({ cniVersion: "1.0.0", type: "weft" }).msg, /name/);
    assert.match(confError({ cniVersion: "1.0.0", name: "weft" }).msg, /type/);
  });

  test("bad mtu, socket, timeoutMs, ipam, dns, flags are code 7 naming the field", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ mtu: 0 }, /mtu/],
      [{ mtu: 67 }, /mtu/],
      [{ mtu: 70000 }, /mtu/],
      [{ mtu: 1450.5 }, /mtu/],
      [{ mtu: "1450" }, /mtu/],
      [{ socket: "relative.sock" }, /socket/],
      [{ socket: 5 }, /socket/],
      [{ socket: "/" + "s".repeat(120) }, /socket/],
      [{ timeoutMs: 0 }, /timeoutMs/],
      [{ ipam: "host-local" }, /ipam/],
      [{ ipam: { subnet: "10.0.0.0/24" } }, /ipam\.type/],
      [{ ipam: { type: "../../bin/sh" } }, /ipam\.type/],
      [{ ipam: { type: "weft" } }, /ipam\.type/],
      [{ ipam: { type: "weft-full" } }, /ipam\.type/],
      [{ dns: { nameservers: ["not-an-ip"] } }, /dns/],
      [{ dns: { search: "x" } }, /dns/],
      [{ disableCheck: "yes" }, /disableCheck/],
      [{ runtimeConfig: [] }, /runtimeConfig/],
    ];
    for (const [extra, re] of cases) {
      const e = confError({ ...base, ...extra });
      assert.equal(e.code, 7, JSON.stringify(extra));
      assert.match(e.msg, re, JSON.stringify(extra));
    }
  });

  test("version checks come first: unknown version is code 1, CHECK/GC/STATUS minimums too", () => {
    assert.equal(confError({ ...base, cniVersion: "0.2.0" }).code, 1);
    assert.equal(confError({ ...base, cniVersion: "9.0.0", name: "" }).code, 1);
    assert.equal(confError({ name: "weft", type: "weft" }).code, 1);
    assert.equal(confError({ ...base, cniVersion: "0.3.1", prevResult: {} }, "CHECK").code, 1);
    assert.equal(confError({ ...base, "cni.dev/valid-attachments": [] }, "GC").code, 1);
    assert.equal(confError({ ...base }, "STATUS").code, 1);
    assert.equal(validateNetConf({ ...base, cniVersion: "1.1.0" }, "STATUS").cniVersion, "1.1.0");
  });

  test("CHECK needs a valid prevResult; DEL ignores a broken one", () => {
    assert.match(confError({ ...base }, "CHECK").msg, /prevResult/);
    assert.equal(confError({ ...base, prevResult: { ips: [{ address: "10.0.0.5" }] } }, "CHECK").code, 7);
    const c = validateNetConf(
      { ...base, prevResult: { cniVersion: "1.0.0", ips: [{ address: "10.0.0.5/24" }] } },
      "CHECK",
    );
    assert.deepEqual(c.prevResult?.ips, [{ address: "10.0.0.5/24" }]);
    assert.equal(validateNetConf({ ...base, prevResult: { ips: "broken" } }, "DEL").prevResult, undefined);
  });

  test("GC reads cni.dev/valid-attachments, or the older cni.dev/attachments", () => {
    const a = [{ containerID: "c1", ifname: "eth0" }];
    const v110 = { ...base, cniVersion: "1.1.0" };
    assert.deepEqual(validateNetConf({ ...v110, "cni.dev/valid-attachments": a }, "GC").validAttachments, a);
    assert.deepEqual(validateNetConf({ ...v110, "cni.dev/attachments": a }, "GC").validAttachments, a);
    assert.deepEqual(validateNetConf({ ...v110, "cni.dev/valid-attachments": [] }, "GC").validAttachments, []);
    // Without a list every attachment would look stale: refused rather than guessed.
    assert.equal(confError({ ...v110 }, "GC").code, 7);
    assert.equal(confError({ ...v110, "cni.dev/valid-attachments": [{ containerID: "c1" }] }, "GC").code, 7);
  });

  test("errors carry the config's version when weft speaks it, else 1.1.0", () => {
    assert.equal(errorVersion({ cniVersion: "0.3.1" }), "0.3.1");
    assert.equal(errorVersion({ cniVersion: "7.0.0" }), "1.1.0");
    assert.equal(errorVersion(undefined), "1.1.0");
  });
});
