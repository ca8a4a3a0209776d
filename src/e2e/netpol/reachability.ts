// Expected connectivity written by hand, as the upstream Kubernetes netpol e2e "truth tables" do:
// start from "everything connects" and mark what a policy should change. Nothing here looks at
// weft's compiler: the expectations are the test's own reading of the NetworkPolicy semantics.

export type PodId = string; // "ns/name"

/** Which pods a rule of the table is about: a namespace, a pod name, or both (absent = any). */
export interface Peer {
  ns?: string;
  pod?: string;
}

export type Matrix = Record<PodId, Record<PodId, boolean>>;

function matches(p: Peer, id: PodId): boolean {
  const [ns, pod] = id.split("/");
  return (p.ns === undefined || p.ns === ns) && (p.pod === undefined || p.pod === pod);
}

export class Reachability {
  private readonly m = new Map<string, boolean>();

  constructor(
    readonly pods: readonly PodId[],
    all = true,
  ) {
    for (const a of pods) for (const b of pods) this.m.set(`${a} ${b}`, all);
  }

  expect(from: PodId, to: PodId, v: boolean): this {
    if (!this.m.has(`${from} ${to}`)) throw new Error(`no pair ${from} -> ${to} in the table`);
    this.m.set(`${from} ${to}`, v);
    return this;
  }

  /** Every pair whose source matches `from` and destination matches `to`. */
  expectPeer(from: Peer, to: Peer, v: boolean): this {
    for (const a of this.pods)
      for (const b of this.pods) if (matches(from, a) && matches(to, b)) this.m.set(`${a} ${b}`, v);
    return this;
  }

  expectAllIngress(to: PodId, v: boolean): this {
    return this.expectPeer({}, parse(to), v);
  }

  expectAllEgress(from: PodId, v: boolean): this {
    return this.expectPeer(parse(from), {}, v);
  }

  get(from: PodId, to: PodId): boolean {
    const v = this.m.get(`${from} ${to}`);
    if (v === undefined) throw new Error(`no pair ${from} -> ${to} in the table`);
    return v;
  }

  /**
   * Pairs where the observed matrix differs. A pod talking to itself over its own address never
   * leaves its namespace, so no node rule can see it; upstream ignores loopback for the same
   * reason (kubernetes#95879), and so does this comparison.
   */
  diff(observed: Matrix): string[] {
    const out: string[] = [];
    for (const a of this.pods) {
      for (const b of this.pods) {
        if (a === b) continue;
        const got = observed[a]?.[b];
        if (got === undefined) out.push(`${a} -> ${b}: missing from the observed matrix`);
        else if (got !== this.get(a, b))
          out.push(
            `${a} -> ${b}: expected ${this.get(a, b) ? "connected" : "blocked"}, observed ${got ? "connected" : "blocked"}`,
          );
      }
    }
    return out;
  }

  /** A truth table like upstream's: "." connected, "X" blocked, "!" where the observation differs. */
  table(observed?: Matrix): string {
    const short = (p: PodId) => p;
    const w = Math.max(...this.pods.map((p) => p.length));
    const lines = [`${"".padEnd(w)}  ${this.pods.map(short).join(" ")}`];
    for (const a of this.pods) {
      const cells = this.pods.map((b) => {
        const exp = this.get(a, b);
        const got = observed?.[a]?.[b];
        const c = a === b ? "-" : got !== undefined && got !== exp ? "!" : exp ? "." : "X";
        return c.padEnd(b.length);
      });
      lines.push(`${a.padEnd(w)}  ${cells.join(" ")}`);
    }
    return lines.join("\n");
  }
}

function parse(id: PodId): Peer {
  const [ns, pod] = id.split("/");
  return { ns, pod };
}
