// The OCI archives every real node's containerd imports at `lab up` (k8s.io namespace).
// scripts/image.sh writes them (weft's image, the lab pod image, busybox and the pause image);
// one place says where, so the lab and the image script agree.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { RealNodeError } from "./host.js";
import { SANDBOX_IMAGE } from "./config.js";

/** Where the image archives are: $WEFT_IMAGES, default $WEFT_CACHE/images (/var/cache/weft/images). */
export function imagesDir(): string {
  return process.env.WEFT_IMAGES || join(process.env.WEFT_CACHE || "/var/cache/weft", "images");
}

/** Every *.tar in the images directory (OCI or docker archives, named by their index annotation). */
export function imageArchives(): string[] {
  const dir = imagesDir();
  if (!existsSync(dir))
    throw new RealNodeError(
      `no image archives in ${dir}: build them with scripts/image.sh (at least the pause image ${SANDBOX_IMAGE}), or point $WEFT_IMAGES at a directory of OCI archives`,
    );
  const tars = readdirSync(dir)
    .filter((f) => f.endsWith(".tar"))
    .sort()
    .map((f) => join(dir, f));
  if (!tars.length) throw new RealNodeError(`no *.tar image archives in ${dir}: build them with scripts/image.sh`);
  return tars;
}
