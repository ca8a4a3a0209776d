// One `lab up` or `lab down` at a time: a lock file beside the lab directory holding the owner's
// PID and start time. A lock whose owner is gone (killed mid-way) is taken over.
import { openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import { isAlive, procStart, type ProcRef } from "./procs.js";

export class LabBusy extends Error {
  constructor(readonly holder: number) {
    super(`another \`weft lab up\` or \`lab down\` is running (pid ${holder}); wait for it to finish`);
    this.name = "LabBusy";
  }
}

export async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const me: ProcRef = { pid: process.pid, start: procStart(process.pid) ?? "" };
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 3) throw e;
      let holder: ProcRef | undefined;
      try {
        holder = JSON.parse(readFileSync(file, "utf8")) as ProcRef;
      } catch {
        holder = undefined; // half-written by a dying owner
      }
      if (holder && isAlive(holder)) throw new LabBusy(holder.pid);
      rmSync(file, { force: true });
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}
