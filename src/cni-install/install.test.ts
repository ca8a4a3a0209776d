// install-cni never leaves a forwarder without the full plugin it falls back to.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InstallError, installCni } from "./index.js";

function tmp(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), "weft-install-"));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test("without the full plugin beside the forwarder, nothing is installed and the error names the missing file", async (t) => {
  const d = tmp(t);
  const forwarder = join(d, "weft-cni");
  writeFileSync(forwarder, "#!/bin/sh\n");
  const bin = join(d, "bin");
  const conf = join(d, "conf");
  await assert.rejects(
    installCni({
      binDir: bin,
      confDir: conf,
      socket: "/run/weft/weft.sock",
      name: "weft",
      portmap: true,
      plugin: forwarder,
    }),
    (e: unknown) => e instanceof InstallError && e.message.includes(`the full plugin ${forwarder}-full is missing`),
  );
  assert.deepEqual(readdirSync(d).sort(), ["weft-cni"], "no bin or conf dir was made");
});

test("with both, the full plugin and the forwarder are installed", async (t) => {
  const d = tmp(t);
  const forwarder = join(d, "weft-cni");
  writeFileSync(forwarder, "forwarder");
  writeFileSync(`${forwarder}-full`, "full");
  const r = await installCni({
    binDir: join(d, "bin"),
    confDir: join(d, "conf"),
    socket: "/run/weft/weft.sock",
    name: "weft",
    portmap: false,
    plugin: forwarder,
  });
  assert.equal(readFileSync(r.plugin, "utf8"), "forwarder");
  assert.equal(readFileSync(`${r.plugin}-full`, "utf8"), "full");
  assert.deepEqual(readdirSync(join(d, "bin")).sort(), ["weft", "weft-full"]);
});

test("a re-run leaves unchanged files alone (same inode), rewrites a changed conflist by rename, and tightens the socket dir", async (t) => {
  const d = tmp(t);
  const forwarder = join(d, "weft-cni");
  writeFileSync(forwarder, "forwarder");
  writeFileSync(`${forwarder}-full`, "full");
  const sockDir = join(d, "run");
  mkdirSync(sockDir, { mode: 0o755 });
  chmodSync(sockDir, 0o755);
  const o = {
    binDir: join(d, "bin"),
    confDir: join(d, "conf"),
    socket: join(sockDir, "weft.sock"),
    name: "weft",
    portmap: true,
    plugin: forwarder,
    prepareSocketDir: true,
  };
  const first = await installCni(o);
  assert.deepEqual(first.changed, { full: true, plugin: true, conflist: true });
  assert.equal(statSync(sockDir).mode & 0o777, 0o700, "the agent refuses a socket dir open to others");
  const ino = (p: string) => statSync(p).ino;
  const before = [ino(first.plugin), ino(`${first.plugin}-full`), ino(first.conflist)];
  const again = await installCni(o);
  assert.deepEqual(again.changed, { full: false, plugin: false, conflist: false });
  assert.deepEqual([ino(first.plugin), ino(`${first.plugin}-full`), ino(first.conflist)], before, "nothing rewritten");
  const moved = await installCni({ ...o, socket: join(sockDir, "other.sock") });
  assert.deepEqual(moved.changed, { full: false, plugin: false, conflist: true });
  assert.notEqual(ino(first.conflist), before[2], "a changed conflist is a new file renamed into place");
  assert.match(readFileSync(first.conflist, "utf8"), /other\.sock/);
  assert.deepEqual(readdirSync(join(d, "conf")), ["10-weft.conflist"], "no temp file is left");
});

test("when a plugin binary cannot be placed, no conflist is written (binaries strictly first)", async (t) => {
  const d = tmp(t);
  const forwarder = join(d, "weft-cni");
  writeFileSync(forwarder, "forwarder");
  writeFileSync(`${forwarder}-full`, "full");
  // A directory where the forwarder goes: the rename onto it fails.
  mkdirSync(join(d, "bin", "weft"), { recursive: true });
  writeFileSync(join(d, "bin", "weft", "x"), "");
  await assert.rejects(
    installCni({
      binDir: join(d, "bin"),
      confDir: join(d, "conf"),
      socket: "/run/weft/weft.sock",
      name: "weft",
      portmap: true,
      plugin: forwarder,
    }),
    (e: unknown) => e instanceof InstallError && e.message.includes(join(d, "bin", "weft")),
  );
  assert.deepEqual(readdirSync(join(d, "conf")), [], "no conflist before its plugin");
  assert.deepEqual(readdirSync(join(d, "bin")).sort(), ["weft", "weft-full"], "no temp file is left");
});
