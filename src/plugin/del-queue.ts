// DELs the agent could not take because it was not running (Cilium's way, PR 23486): the plugin
// writes the runtime's whole call (its CNI_* environment and stdin) to a file, one per attachment,
// and answers DEL with success; the agent replays every file through its normal DEL path when it
// starts, before it serves ADDs (src/agent/ops/del-queue.ts). Without this a node whose agent is
// down could not delete pods at all, and a kubelet retrying DEL forever holds the pod's sandbox.
//
// The queue lives beside the agent's socket (DIR/del-queue for the socket DIR/weft.sock), so the
// plugin and the agent find it from the one path both already know, in the directory the agent
// keeps root-only (0700). Files are written to a temp name and renamed: a reader sees whole files.
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, mkdirSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";

export const QUEUE_DIR_NAME = "del-queue";
/** Only these names are queue entries; anything else in the directory is never read. */
export const QUEUE_FILE = /^[0-9a-f]{64}\.json$/;
/** Temp files of a write in progress (or of a plugin killed mid-write). */
export const QUEUE_TEMP = /^\.[0-9a-f]{64}\.\d+\.[0-9a-f]{8}\.tmp$/;
/** Only the runtime's CNI variables are kept: the rest of a runtime's environment is not ours to store. */
const CNI_VAR = /^CNI_[A-Z_]+$/;
export const QUEUE_VERSION = 1;

/** What a queue file holds. */
export interface QueuedDel {
  version: typeof QUEUE_VERSION;
  /** When the plugin queued it (ISO 8601), for the agent's log. */
  queuedAt: string;
  env: Record<string, string>;
  /** The network config as the runtime sent it, base64. */
  stdin: string;
}

export interface AttachmentKey {
  network: string;
  containerId: string;
  ifname: string;
}

/** The queue of the agent listening on `socket`. */
export function delQueueDir(socket: string): string {
  return join(dirname(resolve(socket)), QUEUE_DIR_NAME);
}

/** One file per attachment, named by a hash: no runtime-given string ever becomes a path. */
export function queueFileName(k: AttachmentKey): string {
  return createHash("sha256").update(`${k.network}\0${k.containerId}\0${k.ifname}`).digest("hex") + ".json";
}

/** The queue directory cannot be trusted: others could plant DELs in it or read pods' configs. */
export class UnsafeQueueDir extends Error {
  constructor(dir: string, problem: string) {
    super(`refusing the DEL queue ${dir}: ${problem}; it must be a directory owned by this user, mode 0700`);
    this.name = "UnsafeQueueDir";
  }
}

/** The directory must be a real directory (not a symlink), ours, and closed to group and others. */
export function checkQueueDir(dir: string): void {
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new UnsafeQueueDir(dir, st.isSymbolicLink() ? "it is a symlink" : "not a directory");
  const uid = process.geteuid?.() ?? st.uid;
  if (st.uid !== uid) throw new UnsafeQueueDir(dir, `owned by uid ${st.uid}, not ${uid}`);
  if (st.mode & 0o077) throw new UnsafeQueueDir(dir, `its mode is 0${(st.mode & 0o777).toString(8)}`);
}

/** Makes the socket's directory and the queue (both 0700) when missing, then checks the queue. */
function ensureQueueDir(socket: string): string {
  const dir = delQueueDir(socket);
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  checkQueueDir(dir);
  return dir;
}

/**
 * Queues one DEL; returns the file. A later DEL of the same attachment replaces the earlier one
 * (the runtime's latest call is the one to replay).
 */
export async function queueDel(
  socket: string,
  key: AttachmentKey,
  env: Record<string, string | undefined>,
  stdin: Buffer,
): Promise<string> {
  const dir = ensureQueueDir(socket);
  const kept: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (CNI_VAR.test(k) && v !== undefined) kept[k] = v;
  const entry: QueuedDel = {
    version: QUEUE_VERSION,
    queuedAt: new Date().toISOString(),
    env: kept,
    stdin: stdin.toString("base64"),
  };
  const name = queueFileName(key);
  const dest = join(dir, name);
  const tmp = join(dir, `.${name.slice(0, 64)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(JSON.stringify(entry));
      // On disk before the rename: a crash leaves the old file or the new one, never an empty one.
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return dest;
}

/** Removes a queue file; one already gone (replayed by the other side) is fine. */
export async function unqueue(file: string): Promise<void> {
  await rm(file, { force: true });
}
