// kernel/bird.ts without a namespace: paths refused before they reach BIRD's argv or config, the
// `show protocols` parser, and a PID file naming some other process is not taken for BIRD.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { birdPaths, findBird, parseProtocols, stopBird } from "./bird.js";
import { InvalidKernelInput } from "./validate.js";

test("BIRD's directory must be absolute and plain (it goes into argv and into the config's quotes)", () => {
  for (const bad of ["relative/dir", "/a/../b", '/a"b', "/a b", "/a\\b"])
    assert.throws(() => birdPaths(bad), InvalidKernelInput, bad);
  assert.equal(birdPaths("/var/lib/weft/bird").socket, "/var/lib/weft/bird/bird.ctl");
});

test("`birdc show protocols` is parsed into name, protocol, state and BGP state", () => {
  const out = `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     22:49:28.970
weft_kernel4 Kernel     master4    up     22:58:49.488
mesh_10_250_0_12 BGP        ---        up     22:58:50.931  Established
mesh_10_250_0_13 BGP        ---        start  22:58:50.657  Active        Socket: Connection refused
`;
  const rows = parseProtocols(out);
  assert.deepEqual(
    rows.filter((r) => r.proto === "BGP").map((r) => [r.name, r.state, r.info]),
    [
      ["mesh_10_250_0_12", "up", "Established"],
      ["mesh_10_250_0_13", "start", "Active Socket: Connection refused"],
    ],
  );
  assert.deepEqual(
    rows.map((r) => [r.name, r.proto, r.info]),
    [
      ["device1", "Device", ""],
      ["weft_kernel4", "Kernel", ""],
      ["mesh_10_250_0_12", "BGP", "Established"],
      ["mesh_10_250_0_13", "BGP", "Active Socket: Connection refused"],
    ],
  );
});

test("a PID file naming a process that is not this BIRD is ignored, and nothing is signalled", async () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-bird-"));
  try {
    const p = birdPaths(dir);
    assert.equal(await findBird(p), null, "no PID file");
    writeFileSync(p.pidfile, `${process.pid}\n`);
    assert.equal(await findBird(p), null, "our own PID is not a BIRD");
    assert.equal(await stopBird(p), null);
    writeFileSync(p.pidfile, "garbage");
    assert.equal(await findBird(p), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
