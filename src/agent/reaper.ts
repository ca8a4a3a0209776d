// Group commit for link deletions: while one deletion runs, DELs that arrive queue up and go
// together in the next one (the kernel deletes a batch for about the price of one link). A lone
// DEL starts at once, so it waits no longer than before.
import type { PodKernel } from "../kernel/pod/types.js";

interface Waiter {
  name: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class LinkReaper {
  private queue: Waiter[] = [];
  private running = false;

  constructor(private readonly kernel: PodKernel) {}

  delete(name: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ name, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.queue.length) {
      const batch = this.queue;
      this.queue = [];
      try {
        await this.kernel.deleteHostLinks(batch.map((w) => w.name));
        for (const w of batch) w.resolve();
      } catch {
        // Tell each caller about its own link: retry them one by one.
        for (const w of batch) await this.kernel.deleteHostLinks([w.name]).then(w.resolve, w.reject);
      }
    }
    this.running = false;
  }
}
