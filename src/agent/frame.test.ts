import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { encodeAnswer, encodeFrame, FRAME_MAGIC, isFrame, parseFrame } from "./frame.js";

describe("plugin frame protocol", () => {
  const call = { env: { CNI_COMMAND: "ADD", CNI_ARGS: "A=1;B=x=y", PATH: "/bin" }, stdin: Buffer.from('{"cniVersion":"1.0.0"}\n') };

  test("a frame round-trips: environment (values may contain '=') and stdin bytes", () => {
    const f = parseFrame(encodeFrame(call), 1 << 20);
    assert.equal(f.state, "done");
    if (f.state !== "done") return;
    assert.deepEqual(f.call.env, call.env);
    assert.deepEqual(f.call.stdin, call.stdin);
  });

  test("arbitrary stdin bytes (NULs, invalid UTF-8) arrive unchanged", () => {
    const stdin = Buffer.from([0, 0xff, 0xfe, 10, 0, 0x7b]);
    const f = parseFrame(encodeFrame({ env: {}, stdin }), 1 << 20);
    assert.ok(f.state === "done" && f.call.stdin.equals(stdin));
  });

  test("every strict prefix is incomplete, never misread", () => {
    const whole = encodeFrame(call);
    for (let n = 9; n < whole.length; n++) assert.equal(parseFrame(whole.subarray(0, n), 1 << 20).state, "incomplete", `prefix of ${n} bytes`);
  });

  test("a JSON request line is not a frame; a short prefix of the magic is undecided", () => {
    assert.equal(isFrame(Buffer.from('{"op":"status","network":"weft"}\n')), false);
    assert.equal(isFrame(Buffer.from("WEFT")), undefined);
    assert.equal(isFrame(Buffer.from(FRAME_MAGIC + "\n")), true);
    assert.equal(isFrame(Buffer.from(FRAME_MAGIC + "X")), false);
  });

  test("length fields over the cap and trailing bytes are refused", () => {
    const big = encodeFrame({ env: {}, stdin: Buffer.alloc(100) });
    const f = parseFrame(big, 50);
    assert.ok(f.state === "invalid" && /stdin larger than 50/.test(f.msg));
    const trailing = parseFrame(Buffer.concat([encodeFrame(call), Buffer.from("x")]), 1 << 20);
    assert.ok(trailing.state === "invalid" && /after the end/.test(trailing.msg));
  });

  test("an answer carries the exit code and stdout length", () => {
    const a = encodeAnswer(1, '{"code":11}\n');
    assert.equal(a.subarray(0, 8).toString(), FRAME_MAGIC);
    assert.equal(a.readInt32BE(8), 1);
    assert.equal(a.readUInt32BE(12), 12);
    assert.equal(a.subarray(16).toString(), '{"code":11}\n');
  });
});
