// Deleting host veths without waiting for the kernel's clean-up. A DELLINK is answered only
// after the kernel has waited (~15-25 ms here) for the network stack to let go of the device,
// but the link is unlisted, with its routes, neighbours and pod end, within a millisecond or two.
// So: the request goes out from a worker thread (koffi async, libuv's pool), the main thread
// watches the link's ifindex, and a caller is answered as soon as its link is gone, or when the
// kernel's answer says why it was not.
//
// Deletions asked for in the same event-loop turn, or while MAX_IN_FLIGHT requests are out,
// are sent together as one group deletion (each link marked with a fresh random group, then `ip link del group G`): the kernel
// unregisters them in one batch and waits once, and only one pool thread is held for it.
import { randomInt } from "node:crypto";
import { NetlinkError } from "./errors.js";
import { delGroup, delLink, getLink, getLinkByIndex, setGroup } from "./requests.js";
import type { NetlinkSocket } from "./socket.js";

const ENODEV = 19;
/** Of libuv's 4 pool threads, at most this many wait on the kernel for deletions at a time. */
const MAX_IN_FLIGHT = 3;
const POLL_MS = 1;

interface Job { name: string; done: (err?: NetlinkError) => void }
interface Watched { name: string; index: number }

export class LinkDeleter {
  private pending: Job[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly idle: NetlinkSocket[] = [];

  constructor(
    /** The kernel's host-namespace socket, for the quick synchronous requests. */
    private readonly host: () => NetlinkSocket,
    /** Opens another socket in the same namespace (one per request out on a worker). */
    private readonly openSocket: () => NetlinkSocket,
    private readonly where: string,
  ) {}

  /** Resolves once `name` is no longer a link (also when it never was); rejects when the kernel refused. */
  delete(name: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ name, done: (err) => (err ? reject(err) : resolve()) });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => { this.scheduled = false; this.schedule(); });
      }
    });
  }

  close(): void {
    for (const s of this.idle.splice(0)) s.close();
  }

  private schedule(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.pending.length) {
      const batch = this.pending.splice(0);
      this.inFlight++;
      void this.run(batch).finally(() => {
        this.inFlight--;
        this.schedule();
      });
    }
  }

  private async run(batch: Job[]): Promise<void> {
    const host = this.host();
    // Same name twice in a batch: one request, every caller answered.
    const byName = new Map<string, Job[]>();
    for (const j of batch) byName.set(j.name, [...(byName.get(j.name) ?? []), j]);
    const names = [...byName.keys()];
    const finish = (name: string, err?: NetlinkError) => { for (const j of byName.get(name) ?? []) j.done(err); byName.delete(name); };

    // Index of each link (to watch it: a name can be reused, an ifindex is not soon), and, for a
    // batch, the group mark. Links already gone are done now.
    const group = names.length > 1 ? randomInt(0x10000000, 0x7fffffff) : 0;
    const reqs = names.flatMap((n) => (group ? [setGroup(n, group), getLink(n)] : [getLink(n)]));
    let answers;
    try { answers = host.transact(reqs); } catch (e) { for (const n of names) finish(n, e as NetlinkError); return; }
    const watched: Watched[] = [];
    names.forEach((n, i) => {
      const step = group ? 2 : 1;
      const mark = answers[i * step];
      const found = answers[i * step + step - 1];
      if (found.errno === ENODEV) return finish(n);
      if (mark.errno && mark.errno !== ENODEV) return finish(n, new NetlinkError(`delete ${n}`, mark.errno, `could not delete ${n} in ${this.where}`, mark.extMessage));
      if (found.errno) return finish(n, new NetlinkError(`delete ${n}`, found.errno, `could not delete ${n} in ${this.where}`, found.extMessage));
      watched.push({ name: n, index: parseIndex(found.messages[0].payload) });
    });
    if (watched.length === 0) return;

    const req = group ? delGroup(group, watched.map((w) => w.name).join(", ")) : delLink(watched[0].name);
    const sock = this.idle.pop() ?? this.openSocket();
    let sent = false;
    const ack = sock.transactAsync([req]).then(
      ([a]) => { sent = true; this.idle.push(sock); return a; },
      (e: unknown) => { sent = true; sock.close(); throw e; },
    );
    // Watch until every link is gone or the kernel has answered.
    const watch = async () => {
      while (!sent && byName.size) {
        await new Promise((r) => setTimeout(r, POLL_MS));
        const left = watched.filter((w) => byName.has(w.name));
        if (!left.length) break;
        const res = host.transact(left.map((w) => getLinkByIndex(w.index, w.name)));
        left.forEach((w, i) => { if (res[i].errno === ENODEV) finish(w.name); });
      }
    };
    const [, settled] = await Promise.all([watch(), ack.then((a) => ({ a }), (e: unknown) => ({ e }))]);
    const left = watched.filter((w) => byName.has(w.name));
    if (!left.length) return;
    if ("e" in settled) { for (const w of left) finish(w.name, settled.e as NetlinkError); return; }
    // The kernel has answered: whatever is still listed was not deleted.
    const res = host.transact(left.map((w) => getLinkByIndex(w.index, w.name)));
    const still = left.filter((w, i) => res[i].errno !== ENODEV);
    for (const w of left) if (!still.includes(w)) finish(w.name);
    if (!still.length) return;
    if (group) {
      // A group deletion is all or nothing: one link that cannot go (not ours to delete, say)
      // keeps the others. Unmark them and try each on its own.
      try { host.transact(still.map((w) => setGroup(w.name, 0))); } catch { /* the single deletions report */ }
      for (const w of still) {
        const jobs = byName.get(w.name) ?? [];
        byName.delete(w.name);
        await this.run(jobs);
      }
      return;
    }
    for (const w of still) finish(w.name, new NetlinkError(req.what, settled.a.errno || 5, `could not delete ${w.name} in ${this.where}`, settled.a.extMessage));
  }
}

function parseIndex(ifinfo: Buffer): number {
  return ifinfo.readInt32LE(4);
}
