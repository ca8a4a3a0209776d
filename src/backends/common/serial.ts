// Runs async operations one at a time, in call order: setup, syncs and teardown of one backend
// must never interleave their reads and writes (a sync diffing state another sync is changing).
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(op: () => Promise<T>): Promise<T> {
    const next = this.tail.then(op, op);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
