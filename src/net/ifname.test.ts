import assert from "node:assert/strict";
import { test } from "node:test";
import { ifnameProblem } from "./ifname.js";

test("interface names: what Linux accepts, minus what ip -batch would read as syntax", () => {
  for (const ok of ["eth0", "a", "x".repeat(15), "net1.100", "wf0123456789a", "weft.1", "br-1_x", "é".repeat(7)]) {
    assert.equal(ifnameProblem(ok), null, ok);
  }
  const why = (n: string) => ifnameProblem(n);
  assert.match(why("") ?? "", /empty/);
  assert.match(why("x".repeat(16)) ?? "", /15 bytes/);
  assert.match(why("é".repeat(8)) ?? "", /15 bytes/, "bytes, not characters");
  assert.match(why(".") ?? "", /not allowed/);
  assert.match(why("..") ?? "", /not allowed/);
  for (const bad of ["eth/0", "eth:0", "eth\0"]) assert.match(why(bad) ?? "", /'\/', ':' or NUL/, JSON.stringify(bad));
  // Word breaks, quoting, comments and escapes in an `ip -batch` line (the netns names' rule, issue 8).
  for (const bad of [
    "eth 0",
    "eth\t0",
    "eth\n0",
    "eth\r0",
    'eth"0',
    "eth'0",
    "eth#0",
    "#eth",
    "eth\\0",
    "eth\u00a00",
  ]) {
    assert.match(why(bad) ?? "", /whitespace, a quote, '#' or a backslash/, JSON.stringify(bad));
  }
});
