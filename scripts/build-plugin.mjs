// Builds the CNI plugin executables, then checks that they answer VERSION:
//  - dist/weft-cni-full: the whole TypeScript plugin as a standalone bun binary (~8 ms to start);
//  - dist/weft-cni: the native forwarder (src/plugin/forwarder.c, starts as fast as /bin/true), which
//    hands each call to the agent (that runs the same TypeScript in process) and execs
//    weft-cni-full whenever it cannot (VERSION, agent down, odd input).
// Why: a runtime execs the plugin for every ADD/DEL; node itself needs 31-75 ms to start, bun
// 7.5 ms, more than the reference plugins' whole ADD (PLATFORM.md). The plugin logic stays
// TypeScript and also runs under node for debugging: `node dist/plugin/main.js` after tsc.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const entry = join(root, "src", "plugin", "main.ts");
const out = join(root, "dist", "weft-cni");
const full = join(root, "dist", "weft-cni-full");
const forwarder = join(root, "src", "plugin", "forwarder.c");
const bun = join(root, "node_modules", ".bin", "bun");
if (!existsSync(entry)) {
  console.error(`build-plugin: ${entry} does not exist yet; skipping`);
  process.exit(0);
}
if (!existsSync(bun)) {
  console.error(`build-plugin: ${bun} is missing: run npm install`);
  process.exit(1);
}
mkdirSync(dirname(out), { recursive: true });
const r = spawnSync(bun, ["build", "--compile", "--minify", "--bytecode", "--target=bun", entry, "--outfile", full], {
  stdio: "inherit",
  cwd: root,
});
if (r.status !== 0) process.exit(r.status ?? 1);

// The forwarder shares the TypeScript plugin's default socket, caps, per-verb timeouts and versions:
// compiled in from the tsc output, so the two cannot drift apart.
const dist = (...p) => import(join(root, "dist", ...p));
const { DEFAULT_SOCKET } = await dist("cni", "config.js");
const { MAX_CONFIG_BYTES, MAX_ENV_BYTES } = await dist("agent-api", "limits.js");
const { DEFAULT_TIMEOUT_MS } = await dist("plugin", "plugin.js");
const { SUPPORTED_VERSIONS, LATEST_VERSION } = await dist("cni", "version.js");
if (!/^\/[A-Za-z0-9_./-]+$/.test(DEFAULT_SOCKET)) throw new Error(`unexpected default socket ${DEFAULT_SOCKET}`);
const int = (name, v) => {
  if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`build-plugin: ${name} is not a positive integer: ${v}`);
  return `-D${name}=${v}`;
};
const versions = [...SUPPORTED_VERSIONS, LATEST_VERSION];
if (!versions.every((v) => /^\d+\.\d+\.\d+$/.test(v))) throw new Error(`unexpected CNI versions ${versions}`);
const defines = [
  `-DWEFT_DEFAULT_SOCKET="${DEFAULT_SOCKET}"`,
  int("WEFT_MAX_STDIN", MAX_CONFIG_BYTES),
  int("WEFT_MAX_ENV", MAX_ENV_BYTES),
  ...["ADD", "DEL", "CHECK", "GC", "STATUS"].map((v) => int(`WEFT_TIMEOUT_${v}`, DEFAULT_TIMEOUT_MS[v])),
  `-DWEFT_SUPPORTED_VERSIONS=" ${SUPPORTED_VERSIONS.join(" ")} "`,
  `-DWEFT_LATEST_VERSION="${LATEST_VERSION}"`,
];
// Static: no dynamic loader at start-up, and the binary runs in any runtime's mount namespace.
const cc = spawnSync("cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-static", ...defines, "-o", out, forwarder], {
  stdio: "inherit",
  cwd: root,
});
if (cc.error || cc.status !== 0) {
  console.error(
    `build-plugin: compiling ${forwarder} failed${cc.error ? ` (${cc.error.message}; is gcc installed? run scripts/setup.sh)` : ""}`,
  );
  process.exit(1);
}

// Smoke test: a binary that cannot answer VERSION would break every pod on the node.
for (const exe of [full, out]) {
  const v = spawnSync(exe, [], { env: { CNI_COMMAND: "VERSION" }, input: '{"cniVersion":"1.0.0"}', encoding: "utf8" });
  let ok = false;
  try {
    ok = v.status === 0 && JSON.parse(v.stdout).supportedVersions.includes("1.0.0");
  } catch {
    ok = false;
  }
  if (!ok) {
    console.error(`build-plugin: ${exe} does not answer VERSION (exit ${v.status}): ${v.stdout}${v.stderr}`);
    process.exit(1);
  }
}
