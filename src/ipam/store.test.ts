// The SQLite allocation store on a real file: states, uniqueness, and what survives a reopen.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parsePool } from "./pool.js";
import Database from "better-sqlite3";
import { IpamStore } from "./store.js";

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "weft-ipam-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const pools = [parsePool("10.90.0.0/29"), parsePool("fd90::/120")];
const req = (containerId: string, ifname = "eth0") => ({
  network: "n",
  containerId,
  ifname,
  netns: `/run/netns/${containerId}`,
  hostIf: `wf${containerId.padStart(11, "0")}`,
  mtu: 1500,
  hostMac: "02:00:00:00:00:01",
  podMac: "02:00:00:00:00:02",
  pools,
});

test("reserve gives one address per pool in state 'adding'; markReady and release", () =>
  withDir((dir) => {
    const s = new IpamStore(dir);
    const a = s.reserve(req("a"));
    assert.equal(a.state, "adding");
    assert.deepEqual(
      a.addresses.map((x) => `${x.address}/${x.prefix}`),
      ["10.90.0.1/32", "fd90::1/128"],
    );
    s.markReady(a, [4, 6]);
    assert.equal(s.get(a)?.state, "ready");
    assert.deepEqual(s.get(a)?.defaultRoutes, [4, 6]);
    assert.throws(() => s.reserve(req("a")), /already has an attachment/);
    assert.equal(s.release(a), true);
    assert.equal(s.release(a), false);
    assert.equal(s.get(a), undefined);
    s.close();
  }));

test("a released address is not handed out again right away, also after a reopen", () =>
  withDir((dir) => {
    let s = new IpamStore(dir);
    const a = s.reserve(req("a"));
    s.release(a);
    s.close();
    s = new IpamStore(dir);
    const b = s.reserve(req("b"));
    assert.equal(b.addresses[0].address, "10.90.0.2");
    s.close();
  }));

test("a full pool fails without leaving a half-written attachment", () =>
  withDir((dir) => {
    const s = new IpamStore(dir);
    for (const id of ["a", "b", "c", "d", "e", "f"]) s.reserve(req(id)); // /29: six usable
    assert.throws(() => s.reserve(req("g")), /no free address left in 10.90.0.0\/29/);
    assert.equal(s.get({ network: "n", containerId: "g", ifname: "eth0" }), undefined);
    const all = s.list().flatMap((r) => r.addresses.map((x) => x.address));
    assert.equal(new Set(all).size, all.length);
    s.close();
  }));

test("delegated addresses are recorded as given and may not collide with an allocated one", () =>
  withDir((dir) => {
    const s = new IpamStore(dir);
    const a = s.reserve(req("a"));
    const d = s.reserve({ ...req("d"), pools: null, delegated: [{ family: 4, address: "192.0.2.9", prefix: 32 }] });
    assert.equal(d.delegated, true);
    assert.deepEqual(s.get(d)?.addresses, [{ family: 4, address: "192.0.2.9", prefix: 32 }]);
    assert.throws(
      () =>
        s.reserve({
          ...req("x"),
          pools: null,
          delegated: [{ family: 4, address: a.addresses[0].address, prefix: 32 }],
        }),
      /already in use/,
    );
    assert.equal(s.get({ network: "n", containerId: "x", ifname: "eth0" }), undefined);
    s.close();
  }));

test("a state dir from before pod names were recorded opens, keeps its pods, and records names from now on", () =>
  withDir((dir) => {
    // The schema as the first agent wrote it (no pod_namespace / pod_name columns).
    const old = new Database(join(dir, "ipam.db"));
    old.exec(`
    CREATE TABLE attachments (
      network TEXT NOT NULL, container_id TEXT NOT NULL, ifname TEXT NOT NULL,
      netns TEXT NOT NULL, host_if TEXT NOT NULL UNIQUE,
      state TEXT NOT NULL CHECK (state IN ('adding', 'ready')),
      delegated INTEGER NOT NULL, mtu INTEGER NOT NULL, host_mac TEXT NOT NULL, pod_mac TEXT NOT NULL,
      default_routes TEXT NOT NULL DEFAULT '',
      created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
      PRIMARY KEY (network, container_id, ifname)
    );
    INSERT INTO attachments (network, container_id, ifname, netns, host_if, state, delegated, mtu, host_mac, pod_mac, default_routes)
      VALUES ('n', 'old', 'eth0', '/run/netns/old', 'wf000000000aa', 'ready', 0, 1500, '02:00:00:00:00:01', '02:00:00:00:00:02', '4');`);
    old.close();
    const s = new IpamStore(dir);
    const before = s.get({ network: "n", containerId: "old", ifname: "eth0" });
    assert.equal(before?.state, "ready");
    assert.equal(before?.pod, undefined);
    const a = s.reserve({ ...req("b"), pod: { namespace: "default", name: "web-1" } });
    assert.deepEqual(s.get(a)?.pod, { namespace: "default", name: "web-1" });
    s.close();
    const again = new IpamStore(dir);
    assert.deepEqual(
      again.list().map((r) => r.pod?.name ?? null),
      [null, "web-1"],
    );
    again.close();
  }));
