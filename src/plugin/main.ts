// The CNI plugin executable (dist/weft-cni, built by scripts/build-plugin.mjs; also runs as
// `node dist/plugin/main.js` for debugging). A runtime runs it for every pod ADD/DEL, so it
// imports only what the verbs need. No top-level await: bun's --bytecode build is CommonJS.
import { writeSync } from "node:fs";
import { asCniError } from "../cni/errors.js";
import { LATEST_VERSION, SUPPORTED_VERSIONS } from "../cni/version.js";
import { runPlugin } from "./plugin.js";
import { readStdin } from "./stdin.js";

// Run by hand without CNI_COMMAND: say what this is (as libcni's skel does) besides the error JSON.
if (!process.env.CNI_COMMAND)
  process.stderr.write(`weft CNI plugin; CNI protocol versions supported: ${SUPPORTED_VERSIONS.join(", ")}\n`);

void runPlugin({ env: process.env, readStdin: () => readStdin(), stdinIsTty: process.stdin.isTTY === true })
  .catch((e: unknown) => ({ stdout: JSON.stringify(asCniError(e).toJson(LATEST_VERSION)), exitCode: 1 }))
  .then((out) => {
    if (out.stdout) writeSync(1, out.stdout + "\n");
    process.exit(out.exitCode);
  });
