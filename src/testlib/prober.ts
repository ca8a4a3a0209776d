// New-connection probers for "nothing breaks while agents restart" checks (the rolling-restart test,
// the real-node proof, bench/install.ts): one Node process per pod, run inside the pod's network
// namespace by the caller, opening a new TCP connection to each target every INTERVAL ms. A probe
// fails on an error or on no connection within TIMEOUT ms: a generous timeout asserts correctness
// (the connection is made), not speed. Established streams can ride out an outage on TCP's
// retransmissions; a new connection's SYN is what sees one.
//
//   node -e PROBER TARGETS INTERVAL TIMEOUT READY STOP OUT
// TARGETS is ip:port[,ip:port...]. READY is written after 20 successes; when STOP exists, the probes
// in flight are waited for and {sent, ok, failed, windows, maxMs} written to OUT (ProbeResult).
export const PROBER = `
const net = require("net"), fs = require("fs");
const [targets, interval, timeout, ready, stop, out] = process.argv.slice(1);
const ts = targets.split(",").map((t) => { const i = t.lastIndexOf(":"); return [t.slice(0, i), Number(t.slice(i + 1))]; });
let sent = 0, ok = 0, failed = 0, inflight = 0, maxMs = 0; const windows = [];
setTimeout(() => { fs.writeFileSync(out, JSON.stringify({ error: "no stop within 15 min" })); process.exit(2); }, 900000).unref();
const probe = ([host, port]) => {
  sent++; inflight++; const s0 = Date.now(); let done = false;
  const s = net.connect({ host, port });
  const end = (err) => {
    if (done) return; done = true; inflight--; clearTimeout(tm); s.destroy(); const ms = Date.now() - s0;
    if (err) { failed++; const target = host + ":" + port;
      let w = windows.findLast((x) => x.target === target);
      if (!w || s0 - w.to > 3 * Number(interval)) windows.push((w = { target, from: s0, to: s0, n: 0, errors: [] }));
      w.to = s0; w.n++; if (!w.errors.includes(err)) w.errors.push(err); }
    else { ok++; maxMs = Math.max(maxMs, ms); if (ok === 20) fs.writeFileSync(ready, "1"); }
  };
  const tm = setTimeout(() => end("timeout"), Number(timeout));
  s.on("connect", () => end()); s.on("error", (e) => end(e.code || e.message));
};
const tick = setInterval(() => {
  if (!fs.existsSync(stop)) { for (const t of ts) probe(t); return; }
  clearInterval(tick);
  const fin = () => { if (inflight) return setTimeout(fin, 20);
    fs.writeFileSync(out, JSON.stringify({ sent, ok, failed, windows, maxMs })); process.exit(0); };
  fin();
}, Number(interval));
`;

/** A TCP listener that accepts and closes every connection: node -e ACCEPTOR PORT (run in a pod). */
export const ACCEPTOR = `
const net = require("net");
net.createServer((s) => s.end()).listen(Number(process.argv[1]), "0.0.0.0");
`;

/** What a prober writes to OUT. */
export interface ProbeResult {
  sent: number;
  ok: number;
  failed: number;
  /** Runs of failed probes to one target: epoch ms of the first and last, how many, which errors. */
  windows: Array<{ target: string; from: number; to: number; n: number; errors: string[] }>;
  /** The slowest successful connect (ms). */
  maxMs: number;
  error?: string;
}

/** The prober's argv after `node -e PROBER`. */
export function proberArgs(
  targets: readonly string[],
  o: { intervalMs: number; timeoutMs: number; ready: string; stop: string; out: string },
): string[] {
  return [targets.join(","), String(o.intervalMs), String(o.timeoutMs), o.ready, o.stop, o.out];
}

/** "n1 -> 10.0.0.2:80: 17 failed (timeout) from 27.1 s to 27.9 s", times after `t0` (epoch ms). */
export function describeWindows(from: string, r: ProbeResult, t0: number): string[] {
  return r.windows.map(
    (w) =>
      `${from} -> ${w.target}: ${w.n} failed (${w.errors.join(", ")}) from ${((w.from - t0) / 1000).toFixed(1)} s to ${((w.to - t0) / 1000).toFixed(1)} s`,
  );
}
