// Traffic helpers the netpol e2e tests run inside pod network namespaces (`nsenter --net=...`),
// independent of the lab's own probe code. One JSON object per line on stdout; SIGTERM ends them.
//
//   flow.js probe '[{"id":"p1","host":"10.244.1.2","port":80}]' INTERVAL_MS TIMEOUT_MS
//       a TCP connect to every target every INTERVAL_MS; prints {"id","t","ok","result"} per attempt
//   flow.js blast PORT LISTEN
//       counts datagrams arriving on UDP LISTEN; reads IPv4 addresses from stdin (one per line) and
//       sends a UDP datagram to PORT on each of them every millisecond; prints {"ready":true} once
//       listening, and on SIGTERM {"sent","firstSend","received","firstReceived"}
//   flow.js inside PEER PORT
//       counts datagrams arriving on UDP 5555 (bound on all addresses before any exists); checks
//       every millisecond for an IPv4 address, prints {"addr","t"} the moment it appears, then
//       sends a UDP datagram to PEER:PORT every millisecond; prints {"ready":true} once listening,
//       and on SIGTERM {"attempts","sent","firstSend","received","firstReceived"}
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { createInterface } from "node:readline";

interface Target {
  id: string;
  host: string;
  port: number;
}

const out = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const onStop = (fn: () => void) => {
  for (const s of ["SIGTERM", "SIGINT"] as const)
    process.on(s, () => {
      fn();
      process.exit(0);
    });
};

function attempt(t: Target, timeoutMs: number): void {
  const started = Date.now();
  let done = false;
  const finish = (result: "connected" | "refused" | "timeout") => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    sock.destroy();
    out({ id: t.id, t: started, ok: result === "connected", result });
  };
  const sock = connect({ host: t.host, port: t.port });
  sock.on("connect", () => finish("connected"));
  sock.on("error", () => finish("refused"));
  const timer = setTimeout(() => finish("timeout"), timeoutMs);
}

function probe(targets: Target[], intervalMs: number, timeoutMs: number): void {
  onStop(() => undefined);
  setInterval(() => {
    for (const t of targets) attempt(t, timeoutMs);
  }, intervalMs);
}

/** A UDP socket on 0.0.0.0:port that counts what arrives; calls ready() once bound. */
function counter(port: number, ready: () => void): { received: number; firstReceived: number | null } {
  const c = { received: 0, firstReceived: null as number | null };
  const s = createSocket("udp4");
  s.on("message", () => {
    c.received++;
    c.firstReceived ??= Date.now();
  });
  s.bind(port, "0.0.0.0", ready);
  return c;
}

function blast(port: number, listen: number): void {
  const rx = counter(listen, () => out({ ready: true }));
  const sock = createSocket("udp4");
  const addrs = new Set<string>();
  let sent = 0;
  let firstSend: number | null = null;
  createInterface({ input: process.stdin }).on("line", (l) => {
    if (l.trim()) addrs.add(l.trim());
  });
  // Send errors (no route yet, ICMP errors reported on the socket) only mean "not delivered".
  sock.on("error", () => undefined);
  const msg = Buffer.from("weft-netpol-blast");
  setInterval(() => {
    for (const a of addrs) {
      firstSend ??= Date.now();
      sent++;
      sock.send(msg, port, a, () => undefined);
    }
  }, 1);
  onStop(() => out({ sent, firstSend, ...rx }));
}

function myIPv4(): string | undefined {
  for (const [name, list] of Object.entries(networkInterfaces())) {
    if (name === "lo") continue;
    const a = list?.find((x) => x.family === "IPv4");
    if (a) return a.address;
  }
  return undefined;
}

function inside(peer: string, port: number): void {
  const rx = counter(5555, () => out({ ready: true }));
  let addr: string | undefined;
  let attempts = 0;
  let sent = 0;
  let firstSend: number | null = null;
  const sock = createSocket("udp4");
  sock.on("error", () => undefined);
  const msg = Buffer.from("weft-netpol-egress");
  setInterval(() => {
    if (!addr) {
      addr = myIPv4();
      if (!addr) return;
      out({ addr, t: Date.now() });
    }
    attempts++;
    sock.send(msg, port, peer, (err) => {
      if (err) return;
      sent++;
      firstSend ??= Date.now();
    });
  }, 1);
  onStop(() => out({ attempts, sent, firstSend, ...rx }));
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "probe") probe(JSON.parse(args[0]) as Target[], Number(args[1]), Number(args[2]));
else if (mode === "blast") blast(Number(args[0]), Number(args[1]));
else if (mode === "inside") inside(args[0], Number(args[1]));
else {
  process.stderr.write(`flow: unknown mode ${mode ?? "(none)"}\n`);
  process.exit(2);
}
