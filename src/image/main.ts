// scripts/image.sh: builds weft's images as oci-archive tars in a cache outside the repository and
// prints where they are. stdout is the list (JSON) only; progress goes to stderr.
//   node dist/image/main.js [--list] [--cache DIR]
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildImages, pruneCache } from "./build.js";
import { ImageBuildError } from "./oci.js";

const HELP = `usage: scripts/image.sh [--list] [--cache DIR] [--tag TAG] [--prune]
Builds, offline, localhost/weft/weft:<commit>, localhost/weft/lab-pod:1, localhost/weft/busybox:1 and
localhost/weft/pause:3.4 as OCI archives (ctr images import, podman load); rebuilds only what changed.
  --list       print only the JSON list {commit, dirty, images: [{name, archive, digest, size, unpacked}]}
  --tag TAG    the weft image's tag instead of the commit (e.g. a second tag to roll a DaemonSet to)
  --prune      then remove from the cache every archive and blob this build does not use
  --cache DIR  where archives go (default $WEFT_IMAGE_CACHE, else $WEFT_CACHE/images, else /var/cache/weft/images)
Environment: WEFT_PAUSE (the static pause binary; default $WEFT_CACHE/pause).`;

const cache = process.env.WEFT_CACHE || "/var/cache/weft";
let values: { list?: boolean; cache?: string; tag?: string; prune?: boolean; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      list: { type: "boolean" },
      cache: { type: "string" },
      tag: { type: "string" },
      prune: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  }));
} catch (e) {
  process.stderr.write(`image: ${(e as Error).message}\n${HELP}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}
const t0 = Date.now();
try {
  const cacheDir = values.cache || process.env.WEFT_IMAGE_CACHE || join(cache, "images");
  const list = await buildImages({
    root: join(dirname(fileURLToPath(import.meta.url)), "..", ".."),
    cacheDir,
    pause: process.env.WEFT_PAUSE || join(cache, "pause"),
    ...(values.tag === undefined ? {} : { tag: values.tag }),
    log: (m) => process.stderr.write(`${m}\n`),
  });
  if (values.prune) process.stderr.write(`image: pruned ${(pruneCache(cacheDir, list) / 1e6).toFixed(1)} MB\n`);
  if (values.list) process.stdout.write(JSON.stringify(list, null, 2) + "\n");
  else
    for (const i of list.images)
      process.stdout.write(
        `${i.name}\t${i.archive}\t${(i.size / 1e6).toFixed(1)} MB (${(i.unpacked / 1e6).toFixed(1)} MB unpacked)\n`,
      );
  process.stderr.write(`image: done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
} catch (e) {
  if (!(e instanceof ImageBuildError)) throw e;
  process.stderr.write(`image: ${e.message}\n`);
  process.exit(1);
}
