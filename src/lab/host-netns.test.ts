// The one "is this the machine's own namespace?" helper (kernel/nsfile.ts) and the lab and
// kernel cleanups that rely on it. A name under /run/netns bound to the host's namespace (as
// `ip netns attach NAME 1` makes) must never be configured, emptied or deleted. The bind mount
// is the test's own and is removed after.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { processesInNetns } from "./procs.js";
import { run, runStatus } from "../kernel/exec.js";
import { deleteNetns, ensureNetns } from "../kernel/netns.js";
import { HostNetnsError, inHostNetns, isHostNetns, netnsFileState } from "../kernel/nsfile.js";
import { createNetns, removeAllNetns } from "../testlib/netns.js";

const alias = `wt-hostalias-${randomBytes(3).toString("hex")}`;
const aliasPath = `/run/netns/${alias}`;

before(async () => {
  assert.ok(inHostNetns(), "the test runner is in the machine's own namespace");
  writeFileSync(aliasPath, "");
  await run(["mount", "--bind", "/proc/self/ns/net", aliasPath]);
});
after(async () => {
  await runStatus(["umount", aliasPath]);
  rmSync(aliasPath, { force: true });
  await removeAllNetns();
});

test("the host's namespace is recognised by any path to it; a test namespace is not the host's", async () => {
  const ns = await createNetns("nsf");
  assert.equal(isHostNetns(aliasPath), true);
  assert.equal(isHostNetns("/proc/self/ns/net"), true);
  assert.equal(isHostNetns(ns.path), false);
  assert.equal(isHostNetns("/run/netns/does-not-exist"), false);
  assert.equal(netnsFileState(aliasPath), "host");
  assert.equal(netnsFileState("/proc/1/ns/net"), "host");
  assert.equal(netnsFileState(ns.path), "ok");
  assert.equal(netnsFileState("/etc/hostname"), "not-a-namespace");
});

test("deleting, reusing or emptying a name bound to the host's namespace is refused and leaves it", async () => {
  await assert.rejects(deleteNetns(alias), HostNetnsError);
  await assert.rejects(ensureNetns(alias), HostNetnsError);
  assert.throws(() => processesInNetns(alias), HostNetnsError);
  assert.ok(existsSync(aliasPath), "the name is still there");
  assert.equal(isHostNetns(aliasPath), true, "and still bound");
});
