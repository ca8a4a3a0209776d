// `weft agent` and `weft ipam check` on bad input: one specific line on stderr, non-zero exit,
// nothing started.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runStatus } from "../kernel/exec.js";

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");
const weft = (...args: string[]) => runStatus([process.execPath, CLI, ...args]);

test("weft agent rejects bad flags with a one-line error", async () => {
  const base = [
    "agent",
    "--node",
    "n1",
    "--state-dir",
    "/nonexistent/weft-test",
    "--socket",
    "/nonexistent/weft-test.sock",
  ];
  const cases: [string[], RegExp][] = [
    [[...base, "--pod-cidr", "10.0.0.1/24"], /host bits set; the network is 10\.0\.0\.0\/24/],
    [[...base, "--pod-cidr", "10.0.0.0/24,10.1.0.0/24"], /at most one IPv4 and one IPv6/],
    [[...base, "--pod-cidr", "banana"], /not a CIDR/],
    [[...base, "--pod-cidr", "10.0.0.0/24", "--mtu", "12"], /--mtu 12/],
    [
      [...base, "--pod-cidr", "10.0.0.0/24", "--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379"],
      /--pod-cidr goes with --store local/,
    ],
    [[...base, "--store", "etcd"], /--store etcd needs --etcd-endpoints/],
    [[...base, "--store", "etcd", "--etcd-endpoints", "ftp://x"], /not an http:\/\/, https:\/\/ or unix:\/\/\/ URL/],
    [[...base, "--store", "banana"], /use local, etcd or kubernetes/],
    [
      [
        ...base,
        "--store",
        "etcd",
        "--etcd-endpoints",
        "http://127.0.0.1:2379",
        "--underlay-address",
        "10.0.0.1,10.0.0.2",
      ],
      /more than one IPv4/,
    ],
    [
      ["agent", "--node", "Bad_Name", "--state-dir", "/nonexistent/x", "--pod-cidr", "10.0.0.0/24"],
      /Kubernetes node name/,
    ],
    [[...base, "--pod-cidr", "10.0.0.0/24", "--lease-ttl", "0"], /--lease-ttl 0/],
    [[...base], /--pod-cidr is required/],
  ];
  for (const [args, re] of cases) {
    const r = await weft(...args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});

test("weft ipam check without an agent says where it looked and exits 2", async () => {
  const r = await weft("ipam", "check", "--socket", "/nonexistent/weft.sock", "-o", "json");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /cannot reach the weft agent at \/nonexistent\/weft\.sock/);
  const bad = await weft("ipam", "check", "-o", "yaml");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /only "json"/);
});
