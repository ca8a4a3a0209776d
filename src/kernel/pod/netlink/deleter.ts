// Deleting host veths without waiting for the kernel's clean-up. A DELLINK is answered only
// after the kernel has waited (~15-25 ms here) for the network stack to let go of the device,
// but the link is unlisted, with its routes, addresses, neighbours and pod end, within a
// millisecond or two, and the kernel announces that (RTM_DELLINK to the link-event group).
// So: the request goes out from a worker thread (koffi async, on libuv's pool), the main thread
// listens for the announcement, and a caller is answered as soon as its link is gone, or when
// the kernel's answer says why it was not.
//
// Deletions asked for in the same event-loop turn, or while MAX_IN_FLIGHT requests are out,
// are sent together as one group deletion (each link marked with a fresh random group, then
// `ip link del group G`): the kernel unregisters them in one batch and waits once, and only one
// pool thread is held for it.
import { randomInt } from "node:crypto";
import { AF_UNSPEC, RTM_DELLINK, RTMGRP_LINK } from "../../netlink/consts.js";
import { NetlinkError } from "../../netlink/errors.js";
import { parseIfinfomsg } from "../../netlink/message.js";
import { delGroup, delLink, getLink, getLinkByIndex, setGroup } from "../../netlink/requests.js";
import type { Answer, NetlinkSocket } from "../../netlink/socket.js";

const ENODEV = 19;
const EIO = 5;
/** Of libuv's 4 pool threads, at most this many wait on the kernel for deletions at a time. */
const MAX_IN_FLIGHT = 3;
const POLL_MS = 1;

interface Job {
  name: string;
  done: (err?: NetlinkError) => void;
}
interface Link {
  name: string;
  index: number;
}

export class LinkDeleter {
  private pending: Job[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly idle: NetlinkSocket[] = [];

  constructor(
    /** The kernel's host-namespace socket, for the quick synchronous requests. */
    private readonly host: () => NetlinkSocket,
    /** Opens another socket in the same namespace, listening to the given multicast groups. */
    private readonly openSocket: (groups?: number) => NetlinkSocket,
    private readonly where: string,
  ) {}

  /** Resolves once `name` is no longer a link (also when it never was); rejects when the kernel refused. */
  delete(name: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ name, done: (err) => (err ? reject(err) : resolve()) });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.schedule();
        });
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
    // Same name twice in a batch: one request, every caller answered.
    const jobs = new Map<string, Job[]>();
    for (const j of batch) jobs.set(j.name, [...(jobs.get(j.name) ?? []), j]);
    const finish = (name: string, err?: NetlinkError) => {
      for (const j of jobs.get(name) ?? []) j.done(err);
      jobs.delete(name);
    };
    const fail = (name: string, a: Answer) =>
      finish(
        name,
        new NetlinkError(`delete ${name}`, a.errno || EIO, `could not delete ${name} in ${this.where}`, a.extMessage),
      );

    // Each link's ifindex (a name can be reused at once, an ifindex is not) and, for a batch,
    // the group mark. Links already gone are done now.
    const names = [...jobs.keys()];
    const group = names.length > 1 ? randomInt(0x10000000, 0x7fffffff) : 0;
    let answers: Answer[];
    try {
      answers = this.host().transact(names.flatMap((n) => (group ? [setGroup(n, group), getLink(n)] : [getLink(n)])));
    } catch (e) {
      for (const n of names) finish(n, e as NetlinkError);
      return;
    }
    const links: Link[] = [];
    names.forEach((name, i) => {
      const [mark, found] = group ? [answers[2 * i], answers[2 * i + 1]] : [answers[i], answers[i]];
      if (found.errno === ENODEV) finish(name);
      else if (mark.errno) fail(name, mark);
      else if (found.errno) fail(name, found);
      else links.push({ name, index: parseIfinfomsg(found.messages[0].payload).index });
    });
    if (links.length === 0) return;

    const req = group ? delGroup(group, links.map((l) => l.name).join(", ")) : delLink(links[0].name);
    // Listen before sending. The announcement comes after the kernel has flushed the link's
    // routes and neighbours (a GETLINK would say "gone" a little earlier, before that clean-up).
    let events: NetlinkSocket | undefined;
    try {
      events = this.openSocket(RTMGRP_LINK);
    } catch {
      /* then the kernel's answer decides */
    }
    try {
      const sock = this.idle.pop() ?? this.openSocket();
      let answered = false;
      const answer = sock.transactAsync([req]).then(
        ([a]) => {
          answered = true;
          if (sock.isOpen) this.idle.push(sock);
          return { a };
        },
        (e: unknown) => {
          answered = true;
          sock.close();
          return { e };
        },
      );
      const byIndex = new Map(links.map((l) => [l.index, l.name]));
      while (events && !answered && jobs.size) {
        await Promise.race([answer, new Promise((r) => setTimeout(r, POLL_MS))]);
        const got = events.drain();
        if (got === "overrun") break; // announcements were lost: wait for the answer
        for (const m of got) {
          if (m.type !== RTM_DELLINK) continue;
          const h = parseIfinfomsg(m.payload);
          const name = h.family === AF_UNSPEC ? byIndex.get(h.index) : undefined;
          if (name !== undefined) finish(name);
        }
      }
      const settled = await answer;
      const left = links.filter((l) => jobs.has(l.name));
      if (!left.length) return;
      if ("e" in settled) {
        for (const l of left)
          finish(
            l.name,
            settled.e instanceof NetlinkError
              ? settled.e
              : new NetlinkError(req.what, EIO, `could not delete ${l.name} in ${this.where}: ${String(settled.e)}`),
          );
        return;
      }
      // The kernel has answered: whatever is still listed was not deleted.
      const res = this.host().transact(left.map((l) => getLinkByIndex(l.index, l.name)));
      const still = left.filter((_, i) => res[i].errno !== ENODEV);
      for (const l of left) if (!still.includes(l)) finish(l.name);
      if (!still.length) return;
      if (!group) return fail(still[0].name, settled.a);
      // A group deletion is all or nothing: one link that cannot go (not ours to delete, say)
      // keeps the others. Unmark them and try each on its own.
      try {
        this.host().transact(still.map((l) => setGroup(l.name, 0)));
      } catch {
        /* the single deletions report */
      }
      for (const l of still) {
        const js = jobs.get(l.name) ?? [];
        jobs.delete(l.name);
        await this.run(js);
      }
    } finally {
      events?.close();
    }
  }
}
