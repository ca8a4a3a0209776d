// Installing weft's CNI plugin on a node: the plugin executables (the native forwarder and the
// full plugin it falls back to) and weft's conflist, where a container runtime looks for them.
// Every file is written atomically (temp file in the same directory, then rename) so a runtime
// that reads them concurrently never sees a half-written file. `weft install-cni` (src/cli) and
// the lab (src/lab) both call installCni.
import { constants, existsSync } from "node:fs";
import { access, chmod, lstat, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Bad options or a file that could not be placed; the message says which and why. */
export class InstallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InstallError";
  }
}

export const DEFAULT_NETWORK = "weft";
export const CONFLIST_NAME = "10-weft.conflist";
export const PLUGIN_NAME = "weft";
/** The forwarder execs "<itself>-full" when the agent cannot take a call (src/plugin/forwarder.c). */
export const FULL_SUFFIX = "-full";
/** The conflist's own version: the highest podman 4.x / libcni 1.1 accept (PLATFORM.md). */
export const CONFLIST_VERSION = "1.0.0";
export const CONFLIST_VERSIONS = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/**
 * The plugin binary `npm run build` makes (dist/weft-cni, beside dist/cli/): the native forwarder.
 * It needs the full TypeScript plugin beside it under its own name + FULL_SUFFIX (dist/weft-cni-full).
 */
export function builtPluginPath(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "weft-cni");
}

export interface ConflistOptions {
  name: string;
  socket: string;
  /** Chain portmap after weft so hostPort mappings work (capability portMappings). */
  portmap: boolean;
}

export interface Conflist {
  cniVersion: string;
  cniVersions: string[];
  name: string;
  plugins: Array<Record<string, unknown>>;
}

export function buildConflist(o: ConflistOptions): Conflist {
  const plugins: Array<Record<string, unknown>> = [{ type: PLUGIN_NAME, socket: o.socket }];
  if (o.portmap) plugins.push({ type: "portmap", capabilities: { portMappings: true } });
  return { cniVersion: CONFLIST_VERSION, cniVersions: [...CONFLIST_VERSIONS], name: o.name, plugins };
}

// Errno codes in words a person can act on.
function why(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOTDIR":
      return "a parent of it is not a directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EROFS":
      return "read-only file system";
    case "ENOSPC":
      return "no space left on device";
    default:
      return code ?? (e as Error).message;
  }
}

// libcni's rule for network names.
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Makes DIR if missing; fails with one line if it is not a writable directory. */
async function ensureDir(flag: string, dir: string): Promise<string> {
  const abs = resolve(dir);
  try {
    const st = await stat(abs);
    if (!st.isDirectory()) throw new InstallError(`${flag} ${dir}: exists and is not a directory`);
  } catch (e) {
    if (e instanceof InstallError) throw e;
    if ((e as NodeJS.ErrnoException).code !== "ENOENT")
      throw new InstallError(`${flag} ${dir}: cannot create it: ${why(e)}`);
    try {
      await mkdir(abs, { recursive: true });
    } catch (e2) {
      throw new InstallError(`${flag} ${dir}: cannot create it: ${why(e2)}`);
    }
  }
  try {
    await access(abs, constants.W_OK | constants.X_OK);
  } catch {
    throw new InstallError(`${flag} ${dir}: directory is not writable`);
  }
  return abs;
}

/** Writes DEST via a temp file in the same directory and a rename, so readers see old or new. */
async function atomicPlace(dest: string, mode: number, write: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = join(dirname(dest), `.${PLUGIN_NAME}-install-${process.pid}-${Date.now()}.tmp`);
  try {
    await write(tmp);
    await chmod(tmp, mode);
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new InstallError(`cannot write ${dest}: ${why(e)}`);
  }
}

/** Whether DEST already holds exactly these bytes with this mode (then it is left alone). */
async function same(dest: string, bytes: Buffer, mode: number): Promise<boolean> {
  try {
    const st = await lstat(dest);
    if (!st.isFile() || (st.mode & 0o777) !== mode || st.size !== bytes.length) return false;
    return (await readFile(dest)).equals(bytes);
  } catch {
    return false;
  }
}

/**
 * Places BYTES at DEST unless it already holds them: a re-run (every DaemonSet pod start) leaves
 * an unchanged file untouched, so a runtime watching the directory sees no event, and a running
 * binary is never replaced by itself.
 */
async function placeIfChanged(dest: string, mode: number, bytes: Buffer): Promise<boolean> {
  if (await same(dest, bytes, mode)) return false;
  await atomicPlace(dest, mode, (tmp) => writeFile(tmp, bytes, { flag: "wx" }));
  return true;
}

/**
 * The agent's socket directory, made 0700 when missing and tightened to 0700 when it is ours but
 * open to others (a hostPath the kubelet creates is 0755, and the agent refuses such a directory).
 */
async function prepareSocketDir(socket: string): Promise<void> {
  const dir = dirname(socket);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await lstat(dir);
    if (!st.isDirectory()) throw new InstallError(`--socket ${socket}: ${dir} is not a directory`);
    const uid = process.geteuid?.() ?? st.uid;
    if (st.uid !== uid)
      throw new InstallError(`--socket ${socket}: ${dir} is owned by uid ${st.uid}, not ${uid}; not changing it`);
    if (st.mode & 0o077) await chmod(dir, 0o700);
  } catch (e) {
    if (e instanceof InstallError) throw e;
    throw new InstallError(`--socket ${socket}: cannot prepare ${dir}: ${why(e)}`);
  }
}

export interface InstallOptions {
  binDir: string;
  confDir: string;
  socket: string;
  name: string;
  portmap: boolean;
  /** The plugin executable to install; defaults to the built dist/weft-cni. */
  plugin?: string;
  /** Also make the socket's directory 0700 (the DaemonSet's init container does, for the agent). */
  prepareSocketDir?: boolean;
}

export interface Installed {
  plugin: string;
  conflist: string;
  /** Which files were (re)written; an unchanged file is left as it was. */
  changed: { full: boolean; plugin: boolean; conflist: boolean };
}

export async function installCni(o: InstallOptions): Promise<Installed> {
  if (!NETWORK_NAME.test(o.name)) {
    throw new InstallError(
      `--name "${o.name}": a network name is letters, digits, '_', '.', '-', starting with a letter or digit`,
    );
  }
  if (!isAbsolute(o.socket)) throw new InstallError(`--socket "${o.socket}": must be an absolute path`);
  // A unix socket path must fit sun_path (108 bytes with its NUL), or no plugin can connect.
  if (Buffer.byteLength(o.socket) > 107)
    throw new InstallError(`--socket: path is longer than 107 bytes, the limit for a unix socket`);
  const src = o.plugin ?? builtPluginPath();
  const full = src + FULL_SUFFIX;
  if (!existsSync(src)) throw new InstallError(`plugin executable ${src} not found; build it first (npm run build)`);
  // The forwarder execs the full plugin whenever the agent cannot take a call: without it every
  // such call would fail, so no install at all rather than half of one.
  if (!existsSync(full))
    throw new InstallError(
      `the full plugin ${full} is missing beside the forwarder ${src}; build both first (npm run build)`,
    );
  const binDir = await ensureDir("--bin-dir", o.binDir);
  const confDir = await ensureDir("--conf-dir", o.confDir);
  const plugin = join(binDir, PLUGIN_NAME);
  const conflist = join(confDir, CONFLIST_NAME);
  if (o.prepareSocketDir) await prepareSocketDir(o.socket);
  // The full plugin first, the forwarder next, the conflist last: a runtime never finds a
  // forwarder without the plugin it falls back to, nor a conflist before its plugin.
  const changed = {
    full: await placeIfChanged(plugin + FULL_SUFFIX, 0o755, await readSource(full)),
    plugin: await placeIfChanged(plugin, 0o755, await readSource(src)),
    conflist: await placeIfChanged(conflist, 0o644, Buffer.from(JSON.stringify(buildConflist(o), null, 2) + "\n")),
  };
  return { plugin, conflist, changed };
}

async function readSource(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new InstallError(`cannot read ${path}: ${why(e)}`);
  }
}
