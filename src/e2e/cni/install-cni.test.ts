// `weft install-cni` as an operator (or a DaemonSet init container) runs it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUILT_PLUGIN, weft } from "./fixture.js";

const skip = !existsSync(BUILT_PLUGIN) ? "dist/weft-cni is not built (npm run build)" : false;

function tmp(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), "weft-install-"));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test(
  "install-cni writes the plugin and the full plugin beside it (0755, same bytes) and the default conflist",
  { skip },
  async (t) => {
    const d = tmp(t);
    const bin = join(d, "opt", "cni", "bin"); // missing directories are created, as on a fresh node
    const conf = join(d, "etc", "cni", "net.d");
    const r = await weft(["install-cni", "--bin-dir", bin, "--conf-dir", conf]);
    assert.equal(r.code, 0, r.stderr);
    const st = statSync(join(bin, "weft"));
    assert.equal(st.mode & 0o777, 0o755);
    assert.ok(
      readFileSync(join(bin, "weft")).equals(readFileSync(BUILT_PLUGIN)),
      "installed plugin differs from dist/weft-cni",
    );
    // The forwarder's fall-back (VERSION, agent down) is the full plugin under its name + "-full".
    assert.equal(statSync(join(bin, "weft-full")).mode & 0o777, 0o755);
    assert.ok(
      readFileSync(join(bin, "weft-full")).equals(readFileSync(`${BUILT_PLUGIN}-full`)),
      "installed weft-full differs from dist/weft-cni-full",
    );
    const list = JSON.parse(readFileSync(join(conf, "10-weft.conflist"), "utf8"));
    assert.deepEqual(list, {
      cniVersion: "1.0.0",
      cniVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
      name: "weft",
      plugins: [
        { type: "weft", socket: "/run/weft/weft.sock" },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    });
    // Nothing but these files: no temp files left from the atomic writes.
    assert.deepEqual(readdirSync(bin).sort(), ["weft", "weft-full"]);
    assert.deepEqual(readdirSync(conf), ["10-weft.conflist"]);
  },
);

test("install-cni honours --socket, --name and --no-portmap", { skip }, async (t) => {
  const d = tmp(t);
  const r = await weft([
    "install-cni",
    "--bin-dir",
    d,
    "--conf-dir",
    d,
    "--socket",
    "/run/x/agent.sock",
    "--name",
    "podnet",
    "--no-portmap",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const list = JSON.parse(readFileSync(join(d, "10-weft.conflist"), "utf8"));
  assert.equal(list.name, "podnet");
  assert.deepEqual(list.plugins, [{ type: "weft", socket: "/run/x/agent.sock" }]);
});

test("install-cni replaces files by rename: a reader holding the old file keeps it whole", { skip }, async (t) => {
  const d = tmp(t);
  assert.equal((await weft(["install-cni", "--bin-dir", d, "--conf-dir", d])).code, 0);
  // A plugin that differs from the built one (an older version, say): replaced. weft-full is the
  // same bytes: left alone, as an unchanged conflist would be.
  writeFileSync(join(d, "weft"), "an older plugin");
  const inode1 = statSync(join(d, "weft")).ino;
  const full1 = statSync(join(d, "weft-full")).ino;
  const conf1 = statSync(join(d, "10-weft.conflist")).ino;
  const r = await weft(["install-cni", "--bin-dir", d, "--conf-dir", d, "--name", "second"]);
  assert.equal(r.code, 0, r.stderr);
  // A new inode means a rename, not an in-place rewrite (which would fail with ETXTBSY on a
  // running plugin and let a runtime read a half-written file).
  assert.notEqual(statSync(join(d, "weft")).ino, inode1);
  assert.notEqual(statSync(join(d, "10-weft.conflist")).ino, conf1);
  assert.equal(statSync(join(d, "weft-full")).ino, full1, "an unchanged file is not rewritten");
  assert.equal(JSON.parse(readFileSync(join(d, "10-weft.conflist"), "utf8")).name, "second");
  assert.deepEqual(readdirSync(d).sort(), ["10-weft.conflist", "weft", "weft-full"]);
});

test("install-cni: bad directories and values fail with one specific line", { skip }, async (t) => {
  const d = tmp(t);
  const file = join(d, "a-file");
  writeFileSync(file, "x");
  const cases: Array<[string[], RegExp]> = [
    [["--bin-dir", file, "--conf-dir", d], /--bin-dir .*not a directory/],
    [["--bin-dir", d, "--conf-dir", file], /--conf-dir .*not a directory/],
    [["--bin-dir", join(file, "sub"), "--conf-dir", d], /--bin-dir .*cannot create/],
    [["--bin-dir", d, "--conf-dir", d, "--name", "bad name"], /--name/],
    [["--bin-dir", d, "--conf-dir", d, "--socket", "relative.sock"], /--socket .*absolute/],
    [["--bin-dir", d, "--conf-dir", d, "--socket", `/run/${"x".repeat(120)}.sock`], /--socket.*107 bytes/],
    [["--conf-dir", d], /--bin-dir/],
  ];
  for (const [args, re] of cases) {
    const r = await weft(["install-cni", ...args]);
    assert.notEqual(r.code, 0, `install-cni ${args.join(" ")} should fail`);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `one line expected, got: ${r.stderr}`);
    assert.match(lines[0], re);
  }
  // A failed run installs nothing.
  assert.deepEqual(readdirSync(d), ["a-file"]);
});
