// OCI image-layout archives written by hand (no registry, no buildah): reproducible layer tars,
// a content-addressed blob cache, and one `oci-archive` tar per image whose index.json names the
// image so that `ctr images import` and `podman load` both tag it (no `import-DATE` prefix).
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  createReadStream,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

export const MEDIA = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** A failure of the image build, with what to do about it. */
export class ImageBuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageBuildError";
  }
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface Layer {
  /** The compressed blob, as the manifest lists it. */
  blob: Descriptor;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids). */
  diffId: string;
  /** Bytes of the uncompressed tar. */
  tarSize: number;
}

/** Runs a tool by argument array; throws with its stderr unless it exits 0. */
export function tool(argv: readonly string[], opts: { input?: Buffer } = {}): Buffer {
  const r = spawnSync(argv[0], argv.slice(1), { input: opts.input, maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw new ImageBuildError(`${argv[0]}: ${r.error.message}`);
  if (r.status !== 0) throw new ImageBuildError(`${argv.join(" ")} exited ${r.status}: ${r.stderr.toString().trim()}`);
  return r.stdout;
}

/** tool() without blocking, so layers compress side by side (gzip is single-threaded). */
export function toolAsync(argv: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err = (err + d).slice(-4000)));
    child.on("error", (e) => reject(new ImageBuildError(`${argv[0]}: ${e.message}`)));
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new ImageBuildError(`${argv.join(" ")} exited ${code}: ${err.trim()}`)),
    );
  });
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return `sha256:${h.digest("hex")}`;
}

export function sha256(data: string | Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/**
 * GNU tar flags for a byte-identical tar of the same tree: sorted names, one mtime, root owner,
 * no atime/ctime (reproducible-builds.org's recipe).
 */
export function reproducibleTarFlags(epoch: number): string[] {
  return [
    "--sort=name",
    `--mtime=@${epoch}`,
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--format=posix",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
  ];
}

/** The content-addressed store under the cache dir: blobs by digest, and diff_id -> gzip blob. */
export class BlobStore {
  readonly blobs: string;
  private readonly byDiff: string;
  readonly tmp: string;

  constructor(readonly dir: string) {
    this.blobs = join(dir, "blobs", "sha256");
    this.byDiff = join(dir, "diffid");
    this.tmp = join(dir, "tmp");
    for (const d of [this.blobs, this.byDiff, this.tmp]) mkdirSync(d, { recursive: true });
  }

  path(digest: string): string {
    return join(this.blobs, digest.replace(/^sha256:/, ""));
  }

  /** Stores bytes (a config or manifest) under their digest. */
  put(data: string | Buffer, mediaType: string): Descriptor {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const digest = sha256(buf);
    const p = this.path(digest);
    if (!existsSync(p)) {
      const t = join(this.tmp, `${digest.slice(7)}.${process.pid}`);
      writeFileSync(t, buf);
      renameSync(t, p);
    }
    return { mediaType, digest, size: buf.length };
  }

  /**
   * A layer from a staged root directory. The tar is made every time (a few seconds: that is how
   * we know whether the content changed); gzip, the slow part, runs only for content not seen before.
   */
  async layer(root: string, epoch: number): Promise<Layer> {
    const work = mkdtempSync(join(this.tmp, "layer-"));
    try {
      const tar = join(work, "layer.tar");
      await toolAsync(["tar", "-C", root, ...reproducibleTarFlags(epoch), "-cf", tar, "."]);
      const diffId = await sha256File(tar);
      const tarSize = statSync(tar).size;
      const known = join(this.byDiff, diffId.slice(7));
      if (existsSync(known)) {
        const blob = JSON.parse(readFileSync(known, "utf8")) as Descriptor;
        if (existsSync(this.path(blob.digest))) return { blob, diffId, tarSize };
      }
      // gzip -n: no name or time in the header, so the same tar gives the same blob.
      await toolAsync(["gzip", "-n", "-6", tar]);
      const gz = `${tar}.gz`;
      const digest = await sha256File(gz);
      const blob: Descriptor = { mediaType: MEDIA.layer, digest, size: statSync(gz).size };
      renameSync(gz, this.path(digest));
      const t = `${known}.${process.pid}`;
      writeFileSync(t, JSON.stringify(blob));
      renameSync(t, known);
      return { blob, diffId, tarSize };
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
}

export interface ImageSpec {
  /** Full reference, e.g. localhost/weft/weft:abc1234. */
  name: string;
  layers: Layer[];
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  labels?: Record<string, string>;
  /** RFC 3339 creation time (the commit's, so the config is reproducible). */
  created: string;
}

export interface BuiltImage {
  name: string;
  archive: string;
  /** Manifest digest: the image's identity (`ctr images ls` shows it). */
  digest: string;
  /** Bytes of the archive (compressed layers). */
  size: number;
  /** Bytes of the uncompressed layers (about what it takes unpacked). */
  unpacked: number;
}

const NAME = /^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** Writes (or finds) the oci-archive of one image in OUTDIR; named by its manifest digest. */
export function writeArchive(store: BlobStore, outDir: string, spec: ImageSpec, epoch: number): BuiltImage {
  if (!NAME.test(spec.name)) throw new ImageBuildError(`image name "${spec.name}" is not a valid repository:tag`);
  const config = {
    created: spec.created,
    architecture: "amd64",
    os: "linux",
    config: {
      Env: spec.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
      ...(spec.cmd ? { Cmd: spec.cmd } : {}),
      ...(spec.workingDir ? { WorkingDir: spec.workingDir } : {}),
      ...(spec.labels ? { Labels: spec.labels } : {}),
    },
    rootfs: { type: "layers", diff_ids: spec.layers.map((l) => l.diffId) },
  };
  const cfg = store.put(JSON.stringify(config), MEDIA.config);
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: cfg,
    layers: spec.layers.map((l) => l.blob),
  };
  const man = store.put(JSON.stringify(manifest), MEDIA.manifest);
  // Both names: containerd's ctr reads io.containerd.image.name, podman (containers/image) the OCI
  // ref.name; a full reference in each keeps either from inventing a prefix.
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [
      {
        ...man,
        annotations: { "io.containerd.image.name": spec.name, "org.opencontainers.image.ref.name": spec.name },
      },
    ],
  };
  const [repo, tag] = [spec.name.slice(0, spec.name.lastIndexOf(":")), spec.name.slice(spec.name.lastIndexOf(":") + 1)];
  const file = `${repo.replace(/[/.]/g, "_")}_${tag}-${man.digest.slice(7, 19)}.oci.tar`;
  const archive = join(outDir, file);
  const unpacked = spec.layers.reduce((n, l) => n + l.tarSize, 0);
  if (!existsSync(archive)) {
    const work = mkdtempSync(join(store.tmp, "layout-"));
    try {
      const blobs = join(work, "blobs", "sha256");
      mkdirSync(blobs, { recursive: true });
      for (const d of [cfg, man, ...spec.layers.map((l) => l.blob)]) {
        const dst = join(blobs, d.digest.slice(7));
        if (!existsSync(dst)) linkSync(store.path(d.digest), dst);
      }
      writeFileSync(join(work, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
      writeFileSync(join(work, "index.json"), JSON.stringify(index));
      const tmp = `${archive}.${process.pid}.tmp`;
      tool(["tar", "-C", work, ...reproducibleTarFlags(epoch), "-cf", tmp, "oci-layout", "index.json", "blobs"]);
      renameSync(tmp, archive);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  return { name: spec.name, archive, digest: man.digest, size: statSync(archive).size, unpacked };
}
