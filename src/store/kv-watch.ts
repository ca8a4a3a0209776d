// Self-healing list + watch under a key prefix of a KvBackend, for the kv stores' nodes and objects.
import type { KvBackend, KvEntry, KvWatchEvent } from "./kv.js";
import { isStoreError, type WatchHandle, type WatchListener } from "./types.js";

/**
 * List + watch under a prefix, delivering typed added/updated/removed events. Survives outages:
 * the backend resumes from its last revision; if history is gone (onReset) or the backend failed,
 * this re-lists and emits the differences against what the listener has already seen.
 */
export function watchPrefix<T>(
  kv: KvBackend,
  prefix: string,
  decode: (e: KvEntry) => T,
  listener: WatchListener<T>,
  replay: boolean,
  filter: (key: string) => boolean = () => true,
): WatchHandle {
  const known = new Map<string, { rev: number; obj: T }>();
  let closed = false;
  let first = true;
  let inner: { cancel(): Promise<void> } | undefined;
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));

  // A value under our prefix that is not ours (hand-written with etcdctl, say) is skipped, not fatal.
  const tryDecode = (e: KvEntry): T | undefined => {
    try {
      return decode(e);
    } catch {
      return undefined;
    }
  };

  const deliver = (ev: Parameters<WatchListener<T>>[0]): void => {
    try {
      listener(ev);
    } catch (e) {
      setImmediate(() => {
        throw e;
      });
    }
  };

  const onEvents = (events: KvWatchEvent[]): void => {
    if (closed) return;
    for (const ev of events) {
      if (!filter(ev.key)) continue;
      const prev = known.get(ev.key);
      if (ev.type === "delete") {
        if (prev) {
          known.delete(ev.key);
          deliver({ type: "removed", object: prev.obj });
        }
        continue;
      }
      if (prev && prev.rev >= ev.modRevision) continue; // already seen (replayed after a re-list)
      const obj = tryDecode({ key: ev.key, value: ev.value ?? "", modRevision: ev.modRevision });
      if (obj === undefined) continue;
      known.set(ev.key, { rev: ev.modRevision, obj });
      deliver(prev ? { type: "updated", object: obj, previous: prev.obj } : { type: "added", object: obj });
    }
  };

  const sync = async (): Promise<void> => {
    let delay = 100;
    while (!closed) {
      try {
        const { entries, revision } = await kv.list(prefix);
        if (closed) return;
        const seen = new Set<string>();
        for (const e of entries) {
          if (!filter(e.key)) continue;
          seen.add(e.key);
          const prev = known.get(e.key);
          if (prev && prev.rev === e.modRevision) continue;
          const obj = tryDecode(e);
          if (obj === undefined) continue;
          known.set(e.key, { rev: e.modRevision, obj });
          if (prev) deliver({ type: "updated", object: obj, previous: prev.obj });
          else if (replay || !first) deliver({ type: "added", object: obj });
        }
        for (const [key, prev] of [...known]) {
          if (!seen.has(key)) {
            known.delete(key);
            deliver({ type: "removed", object: prev.obj });
          }
        }
        first = false;
        inner = kv.watch(prefix, revision, { onEvents, onReset: () => void resync() });
        resolveReady();
        return;
      } catch (err) {
        if (!isStoreError(err, "Unavailable"))
          setImmediate(() => {
            throw err;
          });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  };

  const resync = async (): Promise<void> => {
    const old = inner;
    inner = undefined;
    await old?.cancel().catch(() => undefined);
    await sync();
  };

  void sync();
  return {
    ready,
    close: async () => {
      closed = true;
      resolveReady();
      await inner?.cancel().catch(() => undefined);
    },
  };
}
