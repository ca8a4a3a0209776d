// The kubectl the tests drive: Debian's kubernetes-client 1.20.2, matching the lab's
// kube-apiserver, unpacked by scripts/setup.sh into the cache (not the machine's own kubectl,
// which may be another version or vendor wrapper). One place, so every test uses the same one.
import { existsSync } from "node:fs";
import { join } from "node:path";

/** Path of the cached kubectl (WEFT_CACHE overrides the cache directory, as in the scripts). */
export function kubectlBinary(): string {
  return join(process.env.WEFT_CACHE ?? "/var/cache/weft", "kubectl");
}

/** Why kubectl cannot run here, or undefined when it can. */
export function kubectlSkipReason(): string | undefined {
  return existsSync(kubectlBinary())
    ? undefined
    : `${kubectlBinary()} is missing (bash scripts/setup.sh unpacks Debian's kubernetes-client there)`;
}
