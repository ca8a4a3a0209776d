// Builds the CNI plugin executable (dist/weft-cni) as a standalone bun binary, then checks that
// it answers VERSION. Why bun: a runtime execs the plugin for every ADD/DEL; node itself needs
// 31-75 ms to start, a bun --compile binary about 7.5 ms (PLATFORM.md). The plugin stays
// TypeScript and also runs under node for debugging: `node dist/plugin/main.js` after tsc.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const entry = join(root, "src", "plugin", "main.ts");
const out = join(root, "dist", "weft-cni");
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
const r = spawnSync(bun, ["build", "--compile", "--minify", "--bytecode", "--target=bun", entry, "--outfile", out], {
  stdio: "inherit",
  cwd: root,
});
if (r.status !== 0) process.exit(r.status ?? 1);

// Smoke test: a binary that cannot answer VERSION would break every pod on the node.
const v = spawnSync(out, [], { env: { CNI_COMMAND: "VERSION" }, input: '{"cniVersion":"1.0.0"}', encoding: "utf8" });
let ok = false;
try {
  ok = v.status === 0 && JSON.parse(v.stdout).supportedVersions.includes("1.0.0");
} catch {
  ok = false;
}
if (!ok) {
  console.error(`build-plugin: ${out} does not answer VERSION (exit ${v.status}): ${v.stdout}${v.stderr}`);
  process.exit(1);
}
