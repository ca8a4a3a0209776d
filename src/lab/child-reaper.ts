// Servers a test or the lab starts in the foreground (etcd, kube-apiserver) and their temp dirs:
// killed and removed when this process exits or is interrupted, so a failed run leaves nothing.
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

export const running = new Set<ChildProcess>();
export const dirs = new Set<string>();
let hooked = false;

function cleanupSync(): void {
  for (const c of running) {
    try {
      if (c.pid) process.kill(c.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  running.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/** Installs the exit and SIGINT/SIGTERM hooks once per process. */
export function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", cleanupSync);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      cleanupSync();
      process.kill(process.pid, sig);
    });
  }
}
