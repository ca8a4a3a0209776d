// The OCI archives every real node's containerd imports at `lab up` (k8s.io namespace).
// scripts/image.sh writes them (weft's image, the lab pod image, busybox and the pause image)
// with a list, images.json ({"images":[{"name","archive"}]}), in one directory; this is the one
// place the lab says where, so the lab and the image script agree.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { RealNodeError } from "./host.js";
import { SANDBOX_IMAGE } from "./config.js";

/** $WEFT_IMAGES, else scripts/image.sh's cache: $WEFT_IMAGE_CACHE, else $WEFT_CACHE/images (/var/cache/weft/images). */
export function imagesDir(): string {
  return (
    process.env.WEFT_IMAGES ||
    process.env.WEFT_IMAGE_CACHE ||
    join(process.env.WEFT_CACHE || "/var/cache/weft", "images")
  );
}

const ListSchema = z.object({ images: z.array(z.object({ name: z.string(), archive: z.string() })) });

/**
 * The archives to import: those images.json names (the newest build of each image), or, in a
 * directory without a list, every *.tar in it.
 */
export function imageArchives(): string[] {
  const dir = imagesDir();
  const hint = `build them with scripts/image.sh (at least the pause image ${SANDBOX_IMAGE}), or point $WEFT_IMAGES at a directory of OCI archives`;
  if (!existsSync(dir)) throw new RealNodeError(`no image archives in ${dir}: ${hint}`);
  const list = join(dir, "images.json");
  if (existsSync(list)) {
    const parsed = ListSchema.safeParse(JSON.parse(readFileSync(list, "utf8")));
    if (!parsed.success) throw new RealNodeError(`${list} is not an image list: ${parsed.error.issues[0]?.message}`);
    const files = parsed.data.images.map((i) => i.archive);
    const missing = files.filter((f) => !existsSync(f));
    if (missing.length)
      throw new RealNodeError(`${list} names archives that are gone (${missing.join(", ")}): ${hint}`);
    return files;
  }
  const tars = readdirSync(dir)
    .filter((f) => f.endsWith(".tar"))
    .sort()
    .map((f) => join(dir, f));
  if (!tars.length) throw new RealNodeError(`no *.tar image archives in ${dir}: ${hint}`);
  return tars;
}

/** deploy/weft.yaml of this checkout (dist/lab/realnode/ is three levels below the root). */
export const MANIFEST = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "deploy", "weft.yaml");

/**
 * The weft image deploy/weft.yaml names (e.g. localhost/weft/weft:dev): every node also holds the
 * image built from the checkout under that name, so the manifest applies unchanged.
 */
export function manifestImage(): string | undefined {
  if (!existsSync(MANIFEST)) return undefined;
  return /^\s*image:\s*(localhost\/weft\/weft:[A-Za-z0-9_.-]+)\s*$/m.exec(readFileSync(MANIFEST, "utf8"))?.[1];
}

/** The weft image among the archives images.json lists (named by the commit it was built from). */
export function builtWeftImage(): string | undefined {
  const list = join(imagesDir(), "images.json");
  if (!existsSync(list)) return undefined;
  const parsed = ListSchema.safeParse(JSON.parse(readFileSync(list, "utf8")));
  return parsed.success ? parsed.data.images.find((i) => /^localhost\/weft\/weft:/.test(i.name))?.name : undefined;
}
