import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  encodeAnswer,
  encodeFrame,
  FRAME_MAGIC,
  isFrame,
  RequestReader,
  type ReadLimits,
  type ReadState,
} from "./frame.js";

const BIG: ReadLimits = { maxLine: 1 << 20, maxEnv: 1 << 20, maxStdin: 1 << 20 };

/** Feeds the bytes in pieces of `step` and returns the first settled state (or the last). */
function read(bytes: Buffer, step = bytes.length, limits = BIG, halfClose = false): ReadState {
  const r = new RequestReader(limits);
  let s: ReadState = { state: "incomplete" };
  for (let i = 0; i < bytes.length && s.state === "incomplete"; i += step) s = r.push(bytes.subarray(i, i + step));
  if (s.state === "incomplete" && halfClose) s = r.end();
  return s;
}

describe("plugin frame protocol", () => {
  const call = {
    env: { CNI_COMMAND: "ADD", CNI_ARGS: "A=1;B=x=y", PATH: "/bin" },
    stdin: Buffer.from('{"cniVersion":"1.0.0"}\n'),
  };

  test("a frame round-trips: environment (values may contain '=') and stdin bytes, in one piece or byte by byte", () => {
    for (const step of [Infinity, 1, 3]) {
      const f = read(encodeFrame(call), step);
      assert.equal(f.state, "frame", `pieces of ${step}`);
      if (f.state !== "frame") return;
      assert.deepEqual(f.call.env, call.env);
      assert.deepEqual(f.call.stdin, call.stdin);
    }
  });

  test("arbitrary stdin bytes (NULs, invalid UTF-8) arrive unchanged", () => {
    const stdin = Buffer.from([0, 0xff, 0xfe, 10, 0, 0x7b]);
    const f = read(encodeFrame({ env: {}, stdin }));
    assert.ok(f.state === "frame" && f.call.stdin.equals(stdin));
  });

  test("every strict prefix is incomplete, never misread; cut short by a half-close, it is a truncated frame", () => {
    const whole = encodeFrame(call);
    for (let n = 1; n < whole.length; n++)
      assert.equal(read(whole.subarray(0, n)).state, "incomplete", `prefix of ${n} bytes`);
    const cut = read(whole.subarray(0, 20), 20, BIG, true);
    assert.ok(cut.state === "invalid" && cut.frame && /truncated/.test(cut.msg));
  });

  test("a JSON request line is not a frame; a short prefix of the magic is undecided", () => {
    assert.equal(isFrame(Buffer.from('{"op":"status","network":"weft"}\n')), false);
    assert.equal(isFrame(Buffer.from("WEFT")), undefined);
    assert.equal(isFrame(Buffer.from(FRAME_MAGIC + "\n")), true);
    assert.equal(isFrame(Buffer.from(FRAME_MAGIC + "X")), false);
  });

  test("a JSON line is read up to its newline, in pieces too; without one, up to a half-close", () => {
    const line = '{"op":"status","network":"weft"}';
    for (const step of [Infinity, 1, 5])
      assert.deepEqual(read(Buffer.from(line + "\nrest"), step), { state: "line", text: line });
    assert.deepEqual(read(Buffer.from(line), Infinity, BIG, true), { state: "line", text: line });
    assert.deepEqual(new RequestReader(BIG).end(), { state: "empty" });
  });

  test("length fields over the caps, a line over its cap and trailing bytes are refused", () => {
    const limits = { maxLine: 50, maxEnv: 50, maxStdin: 50 };
    const stdin = read(encodeFrame({ env: {}, stdin: Buffer.alloc(100) }), Infinity, limits);
    assert.ok(stdin.state === "invalid" && stdin.tooLarge && stdin.frame && /stdin larger than 50/.test(stdin.msg));
    const env = read(encodeFrame({ env: { X: "y".repeat(100) }, stdin: Buffer.alloc(0) }), 7, limits);
    assert.ok(env.state === "invalid" && env.tooLarge && /environment larger than 50/.test(env.msg));
    const line = read(Buffer.from("x".repeat(60)), 7, limits);
    assert.ok(
      line.state === "invalid" && line.tooLarge && !line.frame && /larger than 50/.test(line.msg),
      JSON.stringify(line),
    );
    const lateNewline = read(Buffer.from("x".repeat(55) + "\n"), Infinity, limits);
    assert.equal(lateNewline.state, "invalid");
    const trailing = read(Buffer.concat([encodeFrame(call), Buffer.from("x")]));
    assert.ok(trailing.state === "invalid" && /after the end/.test(trailing.msg));
  });

  test("256 KiB sent a byte at a time is read in linear time", () => {
    const stdin = Buffer.alloc(256 << 10, 0x61);
    const bytes = encodeFrame({ env: { A: "b" }, stdin });
    const t0 = performance.now();
    const f = read(bytes, 1, { maxLine: 2 << 20, maxEnv: 2 << 20, maxStdin: 2 << 20 });
    const ms = performance.now() - t0;
    assert.ok(f.state === "frame" && f.call.stdin.equals(stdin));
    // Re-concatenating per piece would copy ~3e10 bytes here: minutes, where linear takes well under a second.
    assert.ok(ms < 15_000, `${ms} ms`);
  });

  test("an answer carries the exit code and stdout length", () => {
    const a = encodeAnswer(1, '{"code":11}\n');
    assert.equal(a.subarray(0, 8).toString(), FRAME_MAGIC);
    assert.equal(a.readInt32BE(8), 1);
    assert.equal(a.readUInt32BE(12), 12);
    assert.equal(a.subarray(16).toString(), '{"code":11}\n');
  });
});
