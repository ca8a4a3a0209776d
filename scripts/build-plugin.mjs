// Builds the CNI plugin executable (dist/weft-cni) as a standalone bun binary.
// Why bun: a runtime execs the plugin for every ADD/DEL; node itself needs 31-75 ms to start,
// a bun --compile binary about 7.5 ms (PLATFORM.md). The plugin stays TypeScript.
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
mkdirSync(dirname(out), { recursive: true });
const r = spawnSync(bun, ["build", "--compile", "--minify", "--bytecode", "--target=bun", entry, "--outfile", out], {
  stdio: "inherit",
  cwd: root,
});
process.exit(r.status ?? 1);
