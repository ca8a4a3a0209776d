// A rack lab (`weft lab up --backend bgp --racks R`) as its tests see it: the ClusterLab fixture
// with this suite's own lab ids (prefix bt-), plus what an operator reads off the routers (FRR's
// `show ip bgp json` / `show ip route json` through vtysh) and a prober in the external namespace.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { frrPaths, vtyshJson } from "../../kernel/frr.js";
import { runStatus } from "../../kernel/exec.js";
import { ClusterLab, skipReason as clusterSkip } from "../cluster/fixture.js";

export { sleep, unconnected } from "../cluster/fixture.js";

export function skipReason(): string | undefined {
  return (
    clusterSkip() ??
    (existsSync("/usr/lib/frr/bgpd") ? undefined : "FRR is not installed (Debian frr)") ??
    (existsSync("/usr/sbin/bird") ? undefined : "BIRD 2 is not installed (Debian bird2)")
  );
}

export class TorLab extends ClusterLab {
  override readonly id = `bt-lab-${Math.random().toString(36).slice(2, 8)}`;
  override readonly dir = `/run/${this.id}`;

  /** A router's FRR files: "tor1", "tor2", ... or "external". */
  router(name: string): ReturnType<typeof frrPaths> {
    const st = this.state();
    const r = name === "external" ? st.external : st.tors?.find((t) => `tor${t.rack}` === name);
    if (!r) throw new Error(`the lab has no router ${name}`);
    return frrPaths(r.frrDir);
  }

  /** BGP best paths on a router: prefix -> next hops (`show ip bgp json`, both families). */
  async bgpBest(name: string): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const cmd of ["show ip bgp json", "show bgp ipv6 unicast json"]) {
      type J = { routes?: Record<string, { bestpath?: boolean; nexthops?: { ip: string }[] }[]> };
      const j = await vtyshJson<J>(this.router(name), cmd, "bgpd");
      for (const [prefix, paths] of Object.entries(j.routes ?? {})) {
        const best = paths.find((p) => p.bestpath) ?? paths[0];
        if (best)
          out.set(
            prefix,
            (best.nexthops ?? []).map((n) => n.ip),
          );
      }
    }
    return out;
  }

  /** Routes a router installed in its kernel through zebra: prefix -> protocol. */
  async installed(name: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const cmd of ["show ip route json", "show ipv6 route json"]) {
      type J = Record<string, { protocol: string; installed?: boolean; selected?: boolean }[]>;
      const j = await vtyshJson<J>(this.router(name), cmd, "zebra");
      for (const [prefix, rs] of Object.entries(j)) {
        const r = rs.find((x) => x.installed) ?? null;
        if (r) out.set(prefix, r.protocol);
      }
    }
    return out;
  }

  netnsOf(name: string): string {
    const st = this.state();
    if (name === "external") return st.external!.netns;
    const t = st.tors?.find((x) => `tor${x.rack}` === name);
    if (t) return t.netns;
    const n = st.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no namespace for ${name}`);
    return n.netns;
  }

  /** Runs argv in a lab namespace (a router's or a node's). */
  async inNs(name: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return runStatus(argv, { netns: `/run/netns/${this.netnsOf(name)}` });
  }

  /**
   * Pings `to` from the external namespace every 10 ms, `count` times; the returned function waits
   * for the end and says how many went unanswered.
   */
  pingFromExternal(to: string, count: number): () => Promise<{ sent: number; lost: number }> {
    const child = spawn(
      "nsenter",
      [`--net=/run/netns/${this.netnsOf("external")}`, "--", "busybox", "ping", "-i", "0.01", "-c", String(count), to],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const closed = new Promise<void>((r) => child.on("close", () => r()));
    return async () => {
      await closed;
      const m = /(\d+) packets transmitted, (\d+) packets received/.exec(stdout);
      // busybox ping stops at the first send error (e.g. "Network unreachable": no route at all).
      if (!m) throw new Error(`ping stopped early: ${stderr.trim()} after ${stdout.slice(-200)}`);
      return { sent: Number(m[1]), lost: Number(m[1]) - Number(m[2]) };
    };
  }
}
