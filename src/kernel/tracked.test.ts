import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { run } from "./exec.js";
import { writeBatch, type CommandKind } from "./tracked.js";

test("writeBatch: one process for many commands; a failing command is named by index, the rest apply", async () => {
  const ns = `wt-${randomBytes(3).toString("hex")}-batch`;
  await run(["ip", "netns", "add", ns]);
  try {
    const netns = `/run/netns/${ns}`;
    await run(["ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    await run(["ip", "-n", ns, "link", "set", "d0", "up"]);
    await run(["ip", "-n", ns, "link", "set", "d1", "up"]);
    await run(["ip", "-n", ns, "addr", "add", "10.9.0.1/24", "dev", "d0"]);
    const seen: [readonly string[], CommandKind][] = [];
    const failed = await writeBatch({ netns, onCommand: (a, k) => seen.push([a, k]) }, "ip", [
      ["ip", "route", "replace", "10.1.0.0/24", "via", "10.9.0.2", "dev", "d0", "proto", "230"],
      ["ip", "route", "replace", "10.2.0.0/24", "via", "10.9.0.2", "dev", "nosuch0", "proto", "230"],
      ["ip", "route", "replace", "fd00:1::/64", "via", "fd00:9::2", "dev", "d0", "onlink", "proto", "230"],
    ]);
    assert.equal(seen.length, 1);
    assert.deepEqual([...failed.keys()], [1]);
    assert.match(failed.get(1) ?? "", /nosuch0/);
    const routes =
      (await run(["ip", "-n", ns, "-4", "route", "show", "proto", "230"])) +
      (await run(["ip", "-n", ns, "-6", "route", "show", "proto", "230"]));
    assert.match(routes, /10\.1\.0\.0\/24/);
    assert.match(routes, /fd00:1::\/64/);
    assert.doesNotMatch(routes, /10\.2\.0\.0/);
    // Commands of another tool are refused rather than fed to the wrong batch parser.
    await assert.rejects(writeBatch({ netns }, "ip", [["bridge", "fdb", "show"]]), /not a ip command/);
  } finally {
    await run(["ip", "netns", "del", ns]);
  }
});
