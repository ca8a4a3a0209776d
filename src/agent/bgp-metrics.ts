// The bgp backend's Prometheus gauges, in the agent's /metrics registry (served with the policy
// metrics): per BGP session its state and prefix counts, and BIRD's health, as the agent's last
// peer sync read them from BIRD (a sync runs on every change and at least every resync period).
//   weft_bgp_session_established{peer,address}               1 when Established, else 0
//   weft_bgp_session_prefixes{peer,address,direction}         routes imported from / exported to the peer
//   weft_bgp_daemon_up                                        1 when BIRD answers on its socket
// Loaded only by an agent that serves metrics (prom-client loads lazily, see run.ts).
import { Gauge, type Registry } from "prom-client";
import type { AgentReport } from "./published.js";

export function registerBgpMetrics(registry: Registry, report: () => AgentReport | undefined): void {
  const sessions = () => report()?.sessions ?? [];
  new Gauge({
    name: "weft_bgp_session_established",
    help: "1 when the BGP session to the peer is Established, else 0 (as of the agent's last peer sync)",
    labelNames: ["peer", "address"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions()) this.set({ peer: s.peer, address: s.address }, s.state === "Established" ? 1 : 0);
    },
  });
  new Gauge({
    name: "weft_bgp_session_prefixes",
    help: "routes imported from (direction=imported) or exported to (direction=exported) the BGP peer",
    labelNames: ["peer", "address", "direction"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of sessions()) {
        if (s.imported !== undefined) this.set({ peer: s.peer, address: s.address, direction: "imported" }, s.imported);
        if (s.exported !== undefined) this.set({ peer: s.peer, address: s.address, direction: "exported" }, s.exported);
      }
    },
  });
  new Gauge({
    name: "weft_bgp_daemon_up",
    help: "1 when BIRD answers on its control socket (as of the agent's last peer sync), else 0",
    registers: [registry],
    collect() {
      const d = report()?.daemon;
      if (d) this.set(d.ok ? 1 : 0);
    },
  });
}
