// Builds weft's container images offline from this checkout and the machine's own binaries:
//   localhost/weft/weft:<commit>  node + the kernel tools the agent runs + dist/ + production
//                                 node_modules + the CNI plugin binaries install-cni copies to the host
//   localhost/weft/lab-pod:1      the lab's pod server (src/lab/pod-server.ts) on the same base
//   localhost/weft/busybox:1      busybox-static with a link per applet
//   localhost/weft/pause:3.4      the static pause binary (scripts/kube-binaries.sh)
// Layers are shared: lab-pod is weft less the plugin layer, so a runtime stores node and dist once.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { BlobStore, ImageBuildError, tool, writeArchive, type BuiltImage, type Layer } from "./oci.js";

/** Bumped when the layout of the images changes, so the fast path does not serve an old build. */
const FORMAT = 2;
/** The time stamped on layers and images that do not come from the repository (busybox, pause, node). */
const FIXED_EPOCH = 0;

export interface BuildOptions {
  /** The repository root (holds dist/, node_modules/, package-lock.json). */
  root: string;
  /** The cache directory: archives, blobs and images.json. */
  cacheDir: string;
  /** The static pause binary. */
  pause: string;
  /** busybox-static. */
  busybox?: string;
  /** The weft image's tag; default the commit (7 hex digits). A second tag lets a test roll the DaemonSet. */
  tag?: string;
  /** Progress lines (stderr in the CLI). */
  log?: (msg: string) => void;
}

export interface ImageList {
  commit: string;
  /** The commit time (RFC 3339): every file's mtime and the configs' creation time, so builds are reproducible. */
  created: string;
  /** Uncommitted changes under src/ or scripts/ when built: the tag names the commit, not this tree. */
  dirty: boolean;
  images: BuiltImage[];
}

/** Kernel tools the agent runs (src/kernel): ip/bridge (iproute2), nft, nsenter/setpriv
 * (util-linux, for other netns and the deny log's child), tcpdump (the deny log's NFLOG capture),
 * ethtool (vxlan checksum offload), env (bin/weft's shebang). */
const TOOLS = ["ip", "bridge", "nft", "nsenter", "setpriv", "tcpdump", "ethtool", "env"];
const SEARCH = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
const LIBDIR = "usr/lib/x86_64-linux-gnu";
export const WEFT_REPO = "localhost/weft/weft";
export const LAB_POD_IMAGE = "localhost/weft/lab-pod:1";
export const BUSYBOX_IMAGE = "localhost/weft/busybox:1";
export const PAUSE_IMAGE = "localhost/weft/pause:3.4";
/** Where weft lives in the image; /usr/local/bin/weft links to its bin/weft. */
export const APP = "/opt/weft";

function which(name: string): string {
  for (const d of SEARCH) {
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  throw new ImageBuildError(`${name} is not installed here (bash scripts/setup.sh installs it)`);
}

/** The shared libraries (and the loader) a dynamic ELF needs, as ldd resolves them here. */
function sharedLibs(exe: string): string[] {
  const r = spawnSync("ldd", [exe], { encoding: "utf8" });
  if (r.status !== 0) {
    if (/not a dynamic executable/.test(r.stdout + r.stderr)) return [];
    throw new ImageBuildError(`ldd ${exe}: ${r.stderr.trim()}`);
  }
  const out: string[] = [];
  for (const line of r.stdout.split("\n")) {
    const m = /=>\s*(\/\S+)\s*\(/.exec(line) ?? /^\s*(\/\S+)\s*\(/.exec(line);
    if (m) out.push(m[1]);
    else if (/not found/.test(line)) throw new ImageBuildError(`ldd ${exe}: ${line.trim()}`);
  }
  return out;
}

function copyFile(src: string, dst: string): void {
  mkdirSync(dirname(dst), { recursive: true });
  copyFileSync(src, dst);
  chmodSync(dst, statSync(src).mode & 0o7777);
}

function mkdirs(root: string, dirs: Record<string, number>): void {
  for (const [d, mode] of Object.entries(dirs)) {
    mkdirSync(join(root, d), { recursive: true });
    chmodSync(join(root, d), mode);
  }
}

/** Merged /usr, as Debian 12: /bin, /sbin, /lib and /lib64 are links into /usr. */
function usrMerge(root: string): void {
  mkdirs(root, { usr: 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "usr/lib": 0o755, "usr/lib64": 0o755 });
  for (const d of ["bin", "sbin", "lib", "lib64"]) symlinkSync(`usr/${d}`, join(root, d));
}

function etc(root: string): void {
  mkdirs(root, { etc: 0o755, tmp: 0o1777, run: 0o755, root: 0o700, var: 0o755, proc: 0o755, sys: 0o755, dev: 0o755 });
  symlinkSync("../run", join(root, "var", "run"));
  writeFileSync(
    join(root, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
  );
  writeFileSync(join(root, "etc", "group"), "root:x:0:\nnogroup:x:65534:\n");
}

/** node and the kernel tools with every library they load: the runtime both images share. */
function stageBase(root: string): void {
  usrMerge(root);
  etc(root);
  const node = realpathSync(process.execPath);
  const exes: Array<[string, string]> = [[node, "usr/bin/node"]];
  for (const t of TOOLS) exes.push([realpathSync(which(t)), `usr/bin/${t}`]);
  const libs = new Map<string, string>();
  for (const [src, dst] of exes) {
    copyFile(src, join(root, dst));
    for (const lib of sharedLibs(src)) libs.set(basename(lib), lib);
  }
  for (const [name, src] of [...libs].sort()) {
    // The loader at its ELF interpreter path; the rest under their sonames in the multiarch dir.
    const dst = name.startsWith("ld-linux") ? join(root, "usr/lib64", name) : join(root, LIBDIR, name);
    copyFile(realpathSync(src), dst);
  }
  // iproute2's name tables (route protocols, tables, scopes): ip prints names from them.
  copyTree("/etc/iproute2", join(root, "etc/iproute2"), () => true);
}

/** Copies a tree of regular files, directories and symlinks, keeping what KEEP accepts. */
function copyTree(src: string, dst: string, keep: (rel: string, isDir: boolean) => boolean, base = src): void {
  if (!existsSync(src)) return;
  mkdirSync(dst, { recursive: true });
  chmodSync(dst, statSync(src).mode & 0o7777);
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const s = join(src, e.name);
    const d = join(dst, e.name);
    const rel = relative(base, s);
    if (!keep(rel, e.isDirectory())) continue;
    if (e.isDirectory()) copyTree(s, d, keep, base);
    else if (e.isSymbolicLink()) symlinkSync(readlinkSync(s), d);
    else if (e.isFile()) copyFile(s, d);
  }
}

/** Compiled dist/ without tests, test support, source maps or the plugin binaries (their own layer). */
function keepDist(rel: string, isDir: boolean): boolean {
  const top = rel.split("/")[0];
  if (isDir) return !["e2e", "testlib"].includes(top) && rel !== "backends/testing";
  return rel.endsWith(".js") && !rel.endsWith(".test.js") && !rel.endsWith("/cases.js");
}

/** Parts of installed packages nothing loads at run time: docs, types, maps, sources of native addons. */
function keepModule(rel: string, isDir: boolean): boolean {
  const name = basename(rel);
  if (isDir) {
    if ([".bin", ".github"].includes(name)) return false;
    // koffi ships a build for every platform; this machine's is enough.
    if (/koffi\/build\/koffi\/[^/]+$/.test(rel)) return name === "linux_x64";
    if (/koffi\/(src|vendor)$/.test(rel)) return false;
    // better-sqlite3: the compiled addon is build/Release/*.node; the SQLite sources and objects are not needed.
    if (/better-sqlite3\/(deps|src|build\/Release\/(obj|obj\.target|\.deps|test_extension\.node\.d))$/.test(rel))
      return false;
    if (/better-sqlite3\/build\/(deps|[^/]*\.target\.mk)$/.test(rel)) return false;
    return true;
  }
  if (/\.(d\.ts|d\.mts|d\.cts|map|md|markdown|ts|mts|cts|c|cc|h|hh|gyp|gypi|mk|o|a)$/i.test(name)) return false;
  if (/^(CHANGELOG|HISTORY|AUTHORS|CONTRIBUTING)/i.test(name)) return false;
  return true;
}

/** The production dependencies (package-lock entries not marked dev), copied from node_modules. */
function stageModules(root: string, dst: string): number {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as {
    packages: Record<string, { dev?: boolean; optional?: boolean; link?: boolean }>;
  };
  let n = 0;
  for (const [path, p] of Object.entries(lock.packages)) {
    if (!path.startsWith("node_modules/") || p.dev || p.link) continue;
    const src = join(root, path);
    if (!existsSync(src)) {
      if (p.optional) continue; // another platform's optional package
      throw new ImageBuildError(`${path} is in package-lock.json but not installed: run npm ci`);
    }
    // Copy the package's own files; nested node_modules are entries of their own in the lock.
    copyTree(
      src,
      join(dst, path),
      (rel, isDir) => !(isDir && rel === "node_modules") && keepModule(join(path, rel), isDir),
    );
    n++;
  }
  return n;
}

/** dist/, node_modules and the CLI entry under /opt/weft, /usr/local/bin/weft a link to it. */
function stageApp(root: string, stage: string): void {
  const app = join(stage, APP.slice(1));
  copyTree(join(root, "dist"), join(app, "dist"), keepDist);
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { name: string; version: string };
  // "type": "module" is what makes node load dist/*.js and bin/weft as ES modules.
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: pkg.name, version: pkg.version, type: "module" }));
  copyFile(join(root, "bin", "weft"), join(app, "bin", "weft"));
  stageModules(root, app);
  mkdirSync(join(stage, "usr/local/bin"), { recursive: true });
  symlinkSync(`${APP}/bin/weft`, join(stage, "usr/local/bin/weft"));
}

function stagePlugin(root: string, stage: string): void {
  for (const f of ["weft-cni", "weft-cni-full"]) {
    const src = join(root, "dist", f);
    if (!existsSync(src)) throw new ImageBuildError(`${src} is not built: run npm run build`);
    copyFile(src, join(stage, APP.slice(1), "dist", f));
  }
}

function stageBusybox(busybox: string, stage: string): void {
  etc(stage);
  mkdirSync(join(stage, "bin"), { recursive: true });
  copyFile(busybox, join(stage, "bin", "busybox"));
  const applets = tool([busybox, "--list"])
    .toString()
    .split("\n")
    .filter((a) => /^[A-Za-z0-9_.[-]+$/.test(a) && a !== "busybox");
  for (const a of applets) symlinkSync("busybox", join(stage, "bin", a));
}

function git(root: string, args: string[]): string {
  return tool(["git", "-C", root, ...args])
    .toString()
    .trim();
}

/** A cheap fingerprint of every input (paths, sizes, mtimes): equal means nothing to rebuild. */
function fingerprint(paths: string[], extra: string[]): string {
  const h = createHash("sha256");
  for (const e of extra) h.update(`${e}\n`);
  const walk = (p: string): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      h.update(`${p} missing\n`);
      return;
    }
    h.update(`${p} ${st.mode} ${st.size} ${st.mtimeMs}\n`);
    if (st.isDirectory()) for (const e of readdirSync(p).sort()) walk(join(p, e));
  };
  for (const p of paths) walk(p);
  return h.digest("hex");
}

/** Builds (or finds in the cache) the four images; writes and returns the list. */
export async function buildImages(o: BuildOptions): Promise<ImageList> {
  const log = o.log ?? (() => undefined);
  const busybox = o.busybox ?? "/bin/busybox";
  for (const [p, what] of [
    [join(o.root, "dist", "cli", "main.js"), "dist/ is not built: run npm run build"],
    [o.pause, "the pause binary is missing: bash scripts/kube-binaries.sh builds it (or set WEFT_PAUSE)"],
    [busybox, "busybox-static is not installed (apt-get install busybox-static)"],
  ] as const) {
    if (!existsSync(p)) throw new ImageBuildError(`${p}: ${what}`);
  }
  const commit = git(o.root, ["rev-parse", "--short=12", "HEAD"]);
  const dirty = git(o.root, ["status", "--porcelain", "--", "src", "scripts", "bin", "package.json"]) !== "";
  const epoch = Number(git(o.root, ["log", "-1", "--format=%ct", "HEAD"]));
  const created = new Date(epoch * 1000).toISOString();
  const fixed = new Date(FIXED_EPOCH * 1000).toISOString();
  const weftTag = o.tag ?? commit.slice(0, 7);
  mkdirSync(o.cacheDir, { recursive: true });
  const listFile = join(o.cacheDir, "images.json");

  const fp = fingerprint(
    [join(o.root, "dist"), join(o.root, "node_modules", ".package-lock.json"), join(o.root, "bin", "weft"), o.pause],
    [
      `format ${FORMAT}`,
      commit,
      weftTag,
      String(dirty),
      readFileSync(new URL(import.meta.url)).toString("base64"),
      readFileSync(new URL("./oci.js", import.meta.url)).toString("base64"),
      ...[process.execPath, busybox, ...TOOLS.map(which)].map((p) => {
        const s = statSync(realpathSync(p));
        return `${p} ${s.size} ${s.mtimeMs}`;
      }),
    ],
  );
  const fpFile = join(o.cacheDir, "fingerprints", fp);
  if (existsSync(fpFile)) {
    const list = JSON.parse(readFileSync(fpFile, "utf8")) as ImageList;
    if (list.images.every((i) => existsSync(i.archive))) {
      log(`images: up to date (${list.images.map((i) => i.name).join(", ")})`);
      publish(listFile, list);
      return list;
    }
  }

  const store = new BlobStore(o.cacheDir);
  const stage = mkdtempSync(join(store.tmp, "stage-"));
  try {
    // Stage every layer first (copies), then tar and compress them side by side.
    const t0 = Date.now();
    const staged = (name: string, fill: (dir: string) => void): string => {
      const dir = join(stage, name);
      mkdirSync(dir);
      fill(dir);
      return dir;
    };
    // Layers made of the machine's binaries get a fixed time (not the commit's): a new commit then
    // reuses them, and a runtime holding two weft versions stores node and the tools once.
    const dirs: Array<[string, string, number]> = [
      ["base", staged("base", stageBase), FIXED_EPOCH],
      ["app", staged("app", (d) => stageApp(o.root, d)), epoch],
      ["plugin", staged("plugin", (d) => stagePlugin(o.root, d)), epoch],
      ["busybox", staged("busybox", (d) => stageBusybox(busybox, d)), FIXED_EPOCH],
      ["pause", staged("pause", (d) => copyFile(o.pause, join(d, "pause"))), FIXED_EPOCH],
    ];
    smokeTest(join(stage, "app"));
    log(`images: staged in ${Date.now() - t0} ms`);
    const [base, app, plugin, bb, pause] = await Promise.all(
      dirs.map(async ([name, dir, time]): Promise<Layer> => {
        const l = await store.layer(dir, time);
        log(
          `images: layer ${name} ${l.blob.digest.slice(7, 19)} ${mb(l.blob.size)} (${mb(l.tarSize)} unpacked) at ${Date.now() - t0} ms`,
        );
        return l;
      }),
    );

    const labels = { "org.opencontainers.image.revision": commit, "org.opencontainers.image.source": "weft" };
    const images = [
      writeArchive(
        store,
        o.cacheDir,
        {
          name: `${WEFT_REPO}:${weftTag}`,
          layers: [base, app, plugin],
          entrypoint: ["/usr/local/bin/weft"],
          cmd: ["--help"],
          labels,
          created,
        },
        epoch,
      ),
      writeArchive(
        store,
        o.cacheDir,
        {
          name: LAB_POD_IMAGE,
          layers: [base, app],
          entrypoint: ["/usr/bin/node", `${APP}/dist/image/lab-pod.js`],
          labels,
          created,
        },
        epoch,
      ),
      writeArchive(
        store,
        o.cacheDir,
        { name: BUSYBOX_IMAGE, layers: [bb], cmd: ["/bin/sh"], created: fixed },
        FIXED_EPOCH,
      ),
      writeArchive(
        store,
        o.cacheDir,
        { name: PAUSE_IMAGE, layers: [pause], entrypoint: ["/pause"], created: fixed },
        FIXED_EPOCH,
      ),
    ];
    const list: ImageList = { commit, created, dirty, images };
    mkdirSync(dirname(fpFile), { recursive: true });
    publish(fpFile, list);
    publish(listFile, list);
    return list;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** The staged CLI loads its commands with only the staged dist/ and node_modules (nothing pruned that it needs). */
function smokeTest(app: string): void {
  const main = join(app, APP.slice(1), "bin", "weft");
  for (const args of [["--help"], ["agent", "--help"], ["install-cni", "--help"], ["lab", "--help"]]) {
    const r = spawnSync(process.execPath, [main, ...args], { encoding: "utf8", env: { PATH: process.env.PATH } });
    if (r.status !== 0)
      throw new ImageBuildError(
        `the staged image's \`weft ${args.join(" ")}\` failed (${r.status}): ${r.stderr.trim()}`,
      );
  }
  const r = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `await import(${JSON.stringify(join(app, APP.slice(1), "dist", "image", "lab-pod.js"))})`,
    ],
    { encoding: "utf8", input: "" },
  );
  if (r.status !== 0) throw new ImageBuildError(`the staged lab-pod entry does not load: ${r.stderr.trim()}`);
}

/** Written to a temp name and renamed: a concurrent build or reader never sees half a list. */
function publish(listFile: string, list: ImageList): void {
  const t = `${listFile}.${process.pid}`;
  writeFileSync(t, JSON.stringify(list, null, 2) + "\n");
  renameSync(t, listFile);
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

/**
 * Removes what LIST does not use from the cache: older archives, blobs, layer map entries and
 * fingerprints (each new commit leaves about 60 MB behind otherwise). Returns the bytes freed.
 * Only on request (scripts/image.sh --prune): a lab may still be importing an older archive.
 */
export function pruneCache(cacheDir: string, list: ImageList): number {
  const store = new BlobStore(cacheDir);
  const keep = new Set<string>();
  for (const i of list.images) {
    keep.add(i.digest.slice(7));
    const m = JSON.parse(readFileSync(store.path(i.digest), "utf8")) as {
      config: { digest: string };
      layers: Array<{ digest: string }>;
    };
    for (const d of [m.config, ...m.layers]) keep.add(d.digest.slice(7));
  }
  let freed = 0;
  const drop = (p: string): void => {
    freed += statSync(p).size;
    rmSync(p, { force: true });
  };
  const archives = new Set(list.images.map((i) => basename(i.archive)));
  for (const f of readdirSync(cacheDir)) if (f.endsWith(".oci.tar") && !archives.has(f)) drop(join(cacheDir, f));
  for (const f of readdirSync(store.blobs)) if (!keep.has(f)) drop(join(store.blobs, f));
  const byDiff = join(cacheDir, "diffid");
  for (const f of readdirSync(byDiff)) {
    const blob = JSON.parse(readFileSync(join(byDiff, f), "utf8")) as { digest: string };
    if (!keep.has(blob.digest.slice(7))) drop(join(byDiff, f));
  }
  const fps = join(cacheDir, "fingerprints");
  for (const f of existsSync(fps) ? readdirSync(fps) : []) {
    const l = JSON.parse(readFileSync(join(fps, f), "utf8")) as ImageList;
    if (!l.images.every((i) => archives.has(basename(i.archive)))) drop(join(fps, f));
  }
  return freed;
}
