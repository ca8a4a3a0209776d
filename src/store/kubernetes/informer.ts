// List + watch of one API collection with @kubernetes/client-node's ListWatch (the informer), made
// to survive outages: the ListWatch stops on errors, so this starts it again with backoff; it then
// resumes from its last resourceVersion, or re-lists and reports the differences (410 Gone).
import * as k8s from "@kubernetes/client-node";
import type { Json, KubeClient } from "./client.js";

export interface InformerHandlers {
  /** Called for new objects; `previous` is what this informer delivered last for the same name. */
  upsert(obj: Json, previous: Json | undefined): void;
  remove(obj: Json): void;
}

export interface InformerHandle {
  /** Resolves when the initial list has been delivered and the watch is live. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

type Obj = k8s.KubernetesObject & Json;

const keyOf = (o: k8s.KubernetesObject): string => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

export function runInformer(
  client: KubeClient,
  path: string,
  handlers: InformerHandlers,
  labelSelector?: string,
  fieldSelector?: string,
): InformerHandle {
  const seen = new Map<string, Json>();
  const list = async (): Promise<k8s.KubernetesListObject<Obj>> =>
    client.request<k8s.KubernetesListObject<Obj>>("GET", path, { query: { labelSelector, fieldSelector } });
  const lw = new k8s.ListWatch<Obj>(path, new k8s.Watch(client.kc), list, false, labelSelector, fieldSelector);
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let delay = 100;
  let failed = false;
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));

  const safe = (fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      setImmediate(() => {
        throw e;
      });
    }
  };
  const upsert = (o: Obj): void => {
    if (closed) return;
    const k = keyOf(o);
    const prev = seen.get(k);
    seen.set(k, o);
    safe(() => handlers.upsert(o, prev));
  };
  lw.on("add", upsert);
  lw.on("update", upsert);
  lw.on("delete", (o) => {
    if (closed) return;
    const k = keyOf(o);
    seen.delete(k);
    safe(() => handlers.remove(o));
  });
  lw.on("error", (err: unknown) => {
    failed = true;
    if (closed) return;
    // A refusal (403 Forbidden, 404 for a kind the apiserver lacks) is worth seeing; an unreachable
    // apiserver is not (it comes back, and calls report Unavailable meanwhile). Retry either way.
    const status = (err as { statusCode?: number; code?: unknown } | undefined)?.statusCode;
    if (status !== undefined && status >= 400 && status < 500 && status !== 410) {
      process.emitWarning(`weft: watch of ${path} failed (HTTP ${status}); retrying`);
    }
    clearTimeout(timer);
    timer = setTimeout(() => void start(), delay);
    delay = Math.min(delay * 2, 2000);
  });

  const start = async (): Promise<void> => {
    if (closed) return;
    failed = false;
    await lw.start().catch((err: unknown) => {
      failed = true;
      clearTimeout(timer);
      if (!closed) timer = setTimeout(() => void start(), delay);
      delay = Math.min(delay * 2, 2000);
      void err;
    });
    if (!failed && !closed) {
      delay = 100;
      resolveReady();
    }
  };
  void start();

  return {
    ready,
    close: async () => {
      closed = true;
      clearTimeout(timer);
      resolveReady();
      await lw.stop();
    },
  };
}
