// The images as the tests (and the lab) get them: built, or found in the cache, by src/image.
import { join } from "node:path";
import { APP, buildImages, type ImageList } from "../../image/build.js";
import { ROOT } from "../cni/fixture.js";

const CACHE = process.env.WEFT_CACHE || "/var/cache/weft";

/** Builds (or finds) the four images; WEFT_IMAGE_CACHE (or CACHEDIR) and WEFT_PAUSE override the places. */
export function testImages(cacheDir?: string): Promise<ImageList> {
  return buildImages({
    root: ROOT,
    cacheDir: cacheDir ?? (process.env.WEFT_IMAGE_CACHE || join(CACHE, "images")),
    pause: process.env.WEFT_PAUSE || join(CACHE, "pause"),
  });
}

/** `ctr run IMAGE ID ARGS` replaces the whole command (entrypoint too): lab-pod's, spelled out. */
export function LAB_POD_ARGV(ports: string[]): string[] {
  return ["/usr/bin/node", `${APP}/dist/image/lab-pod.js`, ...ports];
}
