// install-cni never leaves a forwarder without the full plugin it falls back to.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
