import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CniError } from "./errors.js";
import { mergeResults, parseResult, toVersion } from "./result.js";
import { SUPPORTED_VERSIONS, type CniVersion, type Result } from "./types.js";

/** A dual-stack result using every 1.1.0 field. */
const full: Result = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "wft1a2b3c", mac: "aa:bb:cc:00:00:01", mtu: 1450 },
    {
      name: "eth0",
      mac: "aa:bb:cc:00:00:02",
      mtu: 1450,
      sandbox: "/run/netns/pod1",
      socketPath: "/run/x.sock",
      pciID: "0000:00:1f.6",
    },
  ],
  ips: [
    { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 1 },
    { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 1 },
  ],
  routes: [
    { dst: "0.0.0.0/0", gw: "10.244.1.1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 },
    { dst: "::/0", gw: "fd00:10:244:1::1" },
  ],
  dns: {
    nameservers: ["10.96.0.10"],
    domain: "cluster.local",
    search: ["default.svc.cluster.local"],
    options: ["ndots:5"],
  },
};

/** What the spec says each version carries for `full`. */
const pre100 = (v: string) => ({
  cniVersion: v,
  interfaces: [
    { name: "wft1a2b3c", mac: "aa:bb:cc:00:00:01" },
    { name: "eth0", mac: "aa:bb:cc:00:00:02", sandbox: "/run/netns/pod1" },
  ],
  ips: [
    { version: "4", address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 1 },
    { version: "6", address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 1 },
  ],
  routes: [
    { dst: "0.0.0.0/0", gw: "10.244.1.1" },
    { dst: "::/0", gw: "fd00:10:244:1::1" },
  ],
  dns: full.dns,
});
const expected: Record<CniVersion, unknown> = {
  "0.3.0": pre100("0.3.0"),
  "0.3.1": pre100("0.3.1"),
  "0.4.0": pre100("0.4.0"),
  "1.0.0": {
    ...pre100("1.0.0"),
    ips: [
      { address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 1 },
      { address: "fd00:10:244:1::5/64", gateway: "fd00:10:244:1::1", interface: 1 },
    ],
  },
  "1.1.0": { ...full },
};

describe("result conversion", () => {
  for (const v of SUPPORTED_VERSIONS) {
    test(`${v}: the wire format has exactly that version's fields`, () => {
      assert.deepEqual(toVersion(full, v), expected[v]);
    });

    test(`${v}: parse(toVersion(r)) round-trips everything ${v} can carry`, () => {
      const wire = JSON.parse(JSON.stringify(toVersion(full, v)));
      const back = parseResult(wire, v);
      assert.equal(back.cniVersion, "1.1.0", "internal form is 1.1.0");
      // Converting again gives the same bytes: nothing is lost or invented.
      assert.deepEqual(toVersion(back, v), expected[v]);
      if (v === "1.1.0") assert.deepEqual(back, full);
    });
  }

  test("0.3.x/0.4.0 ips[].version follows the address family", () => {
    const w = toVersion(
      { cniVersion: "1.1.0", ips: [{ address: "192.0.2.1/32" }, { address: "2001:db8::1/128" }] },
      "0.4.0",
    );
    assert.deepEqual(w.ips, [
      { version: "4", address: "192.0.2.1/32" },
      { version: "6", address: "2001:db8::1/128" },
    ]);
  });

  test("empty lists and an empty dns are left out", () => {
    assert.deepEqual(toVersion({ cniVersion: "1.1.0", interfaces: [], ips: [], routes: [], dns: {} }, "1.0.0"), {
      cniVersion: "1.0.0",
    });
  });

  test("the spec's 0.4.0 example parses (host-local style abbreviated result too)", () => {
    const r = parseResult(
      {
        cniVersion: "0.4.0",
        ips: [{ version: "4", address: "10.1.0.5/16", gateway: "10.1.0.1" }],
        routes: [{ dst: "0.0.0.0/0" }],
        dns: { nameservers: ["10.1.0.1"] },
      },
      "0.4.0",
      { ipam: true },
    );
    assert.deepEqual(r, {
      cniVersion: "1.1.0",
      ips: [{ address: "10.1.0.5/16", gateway: "10.1.0.1" }],
      routes: [{ dst: "0.0.0.0/0" }],
      dns: { nameservers: ["10.1.0.1"] },
    });
  });

  test("a result's own cniVersion decides its format; the fallback applies without one", () => {
    // 1.0.0 config, but the prevResult says 0.4.0: its ips[].version is checked.
    assert.throws(
      () => parseResult({ cniVersion: "0.4.0", ips: [{ version: "6", address: "10.0.0.1/24" }] }, "1.0.0"),
      CniError,
    );
    assert.deepEqual(parseResult({ ips: [{ address: "10.0.0.1/24" }] }, "1.0.0").ips, [{ address: "10.0.0.1/24" }]);
  });

  test("malformed results are rejected with the caller's code", () => {
    const bad: unknown[] = [
      null,
      [],
      { ips: {} },
      { ips: [{}] },
      { ips: [{ address: "10.0.0.1" }] },
      { ips: [{ address: "10.0.0.1/33" }] },
      { ips: [{ address: "10.0.0.1/24", gateway: "x" }] },
      { ips: [{ address: "10.0.0.1/24", interface: -1 }] },
      { interfaces: [{ name: "eth0" }], ips: [{ address: "10.0.0.1/24", interface: 1 }] },
      { interfaces: [{ mac: "aa" }] },
      { routes: [{ gw: "10.0.0.1" }] },
      { routes: [{ dst: "0.0.0.0/0", table: "main" }] },
      { dns: { nameservers: "10.0.0.1" } },
      { cniVersion: "0.2.0", ips: [] },
    ];
    for (const raw of bad) {
      assert.throws(
        () => parseResult(raw, "1.0.0", { code: 7 }),
        (e: unknown) => e instanceof CniError && e.code === 7,
        JSON.stringify(raw),
      );
    }
  });

  test("weft after another interface plugin: results are appended and our indexes shift", () => {
    const prev: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "lo", sandbox: "/run/netns/p" }],
      ips: [{ address: "127.0.0.1/8", interface: 0 }],
      dns: { nameservers: ["1.1.1.1"] },
    };
    const ours: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "h" }, { name: "eth0", sandbox: "/run/netns/p" }],
      ips: [{ address: "10.0.0.2/24", interface: 1 }],
      routes: [{ dst: "0.0.0.0/0" }],
    };
    const m = mergeResults(prev, ours);
    assert.deepEqual(
      m.interfaces?.map((i) => i.name),
      ["lo", "h", "eth0"],
    );
    assert.deepEqual(m.ips, [
      { address: "127.0.0.1/8", interface: 0 },
      { address: "10.0.0.2/24", interface: 2 },
    ]);
    assert.equal(m.interfaces![m.ips![1].interface!].name, "eth0");
    assert.deepEqual(m.routes, [{ dst: "0.0.0.0/0" }]);
    assert.deepEqual(m.dns, { nameservers: ["1.1.1.1"] });
  });
});
