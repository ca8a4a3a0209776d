// Delegated IPAM plugins are bounded: one that floods stdout or stderr is killed once it passes
// the cap, and the runtime gets a CNI error instead of a plugin growing without limit.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CniError } from "../cni/errors.js";
import { DELEGATE_OUTPUT_CAP, runDelegate, type Delegate } from "./delegate.js";

const dir = mkdtempSync(join(tmpdir(), "weft-delegate-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A fake IPAM plugin: records its PID, then runs `body` (sh). */
function plugin(name: string, body: string): Delegate {
  writeFileSync(join(dir, name), `#!/bin/sh\necho $$ > ${join(dir, name)}.pid\n${body}\n`);
  chmodSync(join(dir, name), 0o755);
  return {
    type: name,
    path: [dir],
    env: { PATH: process.env.PATH },
    config: Buffer.from("{}"),
    cniVersion: "1.0.0",
    timeoutMs: 20_000,
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// stdout at the real cap; stderr (passed on to ours, so to this test's output) at a small one.
for (const [stream, cap] of [
  ["stdout", DELEGATE_OUTPUT_CAP],
  ["stderr", 4096],
] as const) {
  test(`a delegate flooding ${stream} is killed past ${cap} bytes and answers a CNI error`, async () => {
    const d = {
      ...plugin(`flood-${stream}`, stream === "stdout" ? "exec cat /dev/zero" : "exec yes 'stderr flood' >&2"),
      outputCap: cap,
    };
    const err = await runDelegate(d, "ADD").then(
      () => assert.fail("the flood must fail"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof CniError, String(err));
    assert.equal(err.code, 999);
    assert.match(err.message, new RegExp(`IPAM plugin flood-${stream} ADD wrote more than ${cap} bytes to ${stream}`));
    const pid = Number(readFileSync(join(dir, `flood-${stream}.pid`), "utf8"));
    assert.equal(alive(pid), false, "the plugin was killed");
  });
}

test("a delegate within the caps still answers normally", async () => {
  const d = plugin("fine", `cat >/dev/null; echo '{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.5/24"}]}'`);
  const r = await runDelegate(d, "ADD");
  assert.equal(r?.ips?.[0].address, "10.9.0.5/24");
  assert.ok(existsSync(join(dir, "fine.pid")));
});
