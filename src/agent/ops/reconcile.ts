// At start: undo what a crash left half-made and remove weft host links nobody owns. Never
// touches 'ready' pods. Only safe once the agent holds its namespace's lock (run.ts): another
// live agent's pods would look like orphans here.
import { HOST_IF_PATTERN } from "../naming.js";
import type { OpContext } from "./context.js";

export async function reconcile(ctx: OpContext): Promise<{ rolledBack: number; orphanLinks: number }> {
  const { o } = ctx;
  const records = o.store.list();
  const adding = records.filter((r) => r.state === "adding");
  const owned = new Set(records.filter((r) => r.state === "ready").map((r) => r.hostIf));
  const links = (await o.kernel.hostLinks()).filter((l) => HOST_IF_PATTERN.test(l.name));
  const orphans = links.map((l) => l.name).filter((n) => !owned.has(n));
  // A half-made pod's host link is one of the orphans: one batch deletes them all.
  await o.kernel.deleteHostLinks(orphans);
  for (const r of adding) {
    o.store.release(r);
    o.log.warn(
      { containerId: r.containerId, ifname: r.ifname, addresses: r.addresses.map((a) => a.address) },
      "rolled back an ADD interrupted by a restart",
    );
  }
  const adoptedOrphans = orphans.filter((n) => !adding.some((r) => r.hostIf === n)).length;
  if (adoptedOrphans) o.log.warn({ links: adoptedOrphans }, "removed weft host links without an allocation");
  return { rolledBack: adding.length, orphanLinks: adoptedOrphans };
}
