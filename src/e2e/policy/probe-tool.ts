// A traffic tool the policy tests run inside pod namespaces (nsenter --net=... node probe-tool.js):
//   serve --ports P[,P]                       UDP echo + TCP echo on every port, IPv4 and IPv6;
//                                             prints one JSON line per datagram / connection received
//   send --to ADDR --port P --interval-ms N --proto udp|tcp|both
//                                             sends until ended; each probe carries its send time
//   once --to ADDR --port P --proto udp|tcp --timeout-ms N
//                                             exit 0 when answered, 1 when not
// Send times are process.hrtime (CLOCK_MONOTONIC, the same clock in every process), so a test can
// tell which packets were sent after a given moment.
import { createSocket } from "node:dgram";
import { createServer, connect } from "node:net";
import { isIP } from "node:net";

const args = process.argv.slice(2);
const flag = (name: string, def?: string): string => {
  const i = args.indexOf(`--${name}`);
  if (i >= 0 && args[i + 1] !== undefined) return args[i + 1];
  if (def !== undefined) return def;
  process.stderr.write(`probe-tool: --${name} is required\n`);
  process.exit(2);
};
const out = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + "\n");
const plain = (a: string | undefined) => (a ?? "").replace(/^::ffff:/, "");
const now = () => process.hrtime.bigint().toString();

function serve(): void {
  const ports = flag("ports").split(",").map(Number);
  let pending = ports.length * 2;
  const up = () => {
    if (--pending === 0) out({ ev: "ready" });
  };
  for (const port of ports) {
    const u = createSocket({ type: "udp6", ipv6Only: false });
    u.on("message", (msg, r) => {
      out({ ev: "udp", port, from: plain(r.address), t: msg.toString().trim() });
      u.send(msg, r.port, r.address);
    });
    u.bind(port, "::", up);
    const s = createServer((c) => {
      const from = plain(c.remoteAddress);
      c.setEncoding("utf8");
      let buf = "";
      c.on("data", (d: string) => {
        buf += d;
        if (!buf.includes("\n")) return;
        out({ ev: "tcp", port, from, t: buf.trim() });
        c.end(buf);
      });
      c.on("error", () => undefined);
    });
    s.listen({ port, host: "::", ipv6Only: false }, up);
  }
}

function target(): { to: string; port: number; family: 4 | 6 } {
  const to = flag("to");
  const fam = isIP(to);
  if (fam === 0) {
    process.stderr.write(`probe-tool: --to ${to} is not an address\n`);
    process.exit(2);
  }
  return { to, port: Number(flag("port")), family: fam as 4 | 6 };
}

// `send` gives each datagram a source port this sender has not used before: a reused port would
// match the conntrack entry of an earlier flow (say, one made before the pod was isolated), and
// `ct state established` rightly lets that old flow on. The kernel picks the port; a repeat is
// closed and picked again.
const usedSrcPorts = new Set<number>();

function udpProbe(
  to: string,
  port: number,
  family: 4 | 6,
  timeoutMs: number,
  onEcho: (t: string) => void,
  freshSrcPort = false,
): void {
  const u = createSocket(family === 4 ? "udp4" : "udp6");
  const timer = setTimeout(() => u.close(), timeoutMs);
  u.on("message", (m) => {
    clearTimeout(timer);
    onEcho(m.toString().trim());
    u.close();
  });
  u.on("error", () => {
    clearTimeout(timer);
    try {
      u.close();
    } catch {
      /* closed */
    }
  });
  // The send time is taken when the datagram goes out (after the bind), never earlier.
  const sendNow = () => u.send(`${now()}\n`, port, to);
  if (!freshSrcPort) return sendNow();
  u.bind(0, () => {
    const src = u.address().port;
    if (!usedSrcPorts.has(src)) {
      usedSrcPorts.add(src);
      return sendNow();
    }
    clearTimeout(timer);
    u.close();
    udpProbe(to, port, family, timeoutMs, onEcho, true);
  });
}

function tcpProbe(to: string, port: number, timeoutMs: number, onEcho: (t: string) => void, onFail: () => void): void {
  const t = now();
  const c = connect({ host: to, port });
  c.setEncoding("utf8");
  const timer = setTimeout(() => {
    c.destroy();
    onFail();
  }, timeoutMs);
  let buf = "";
  c.on("connect", () => c.write(`${t}\n`));
  c.on("data", (d: string) => {
    buf += d;
    if (buf.includes("\n")) {
      clearTimeout(timer);
      c.destroy();
      onEcho(buf.trim());
    }
  });
  c.on("error", () => {
    clearTimeout(timer);
    onFail();
  });
}

function send(): void {
  const { to, port, family } = target();
  const interval = Number(flag("interval-ms", "20"));
  const proto = flag("proto", "udp");
  out({ ev: "ready" });
  setInterval(() => {
    if (proto !== "tcp") udpProbe(to, port, family, 1000, (t) => out({ ev: "udp-echo", t }), true);
    if (proto !== "udp")
      tcpProbe(
        to,
        port,
        1000,
        (t) => out({ ev: "tcp-echo", t }),
        () => undefined,
      );
  }, interval);
}

function once(): void {
  const { to, port, family } = target();
  const timeout = Number(flag("timeout-ms", "1000"));
  const proto = flag("proto", "tcp");
  const done = (ok: boolean) => process.exit(ok ? 0 : 1);
  setTimeout(() => done(false), timeout + 200);
  if (proto === "udp") udpProbe(to, port, family, timeout, () => done(true));
  else
    tcpProbe(
      to,
      port,
      timeout,
      () => done(true),
      () => done(false),
    );
}

switch (args[0]) {
  case "serve":
    serve();
    break;
  case "send":
    send();
    break;
  case "once":
    once();
    break;
  default:
    process.stderr.write("usage: probe-tool serve|send|once ...\n");
    process.exit(2);
}
process.on("SIGTERM", () => process.exit(0));
