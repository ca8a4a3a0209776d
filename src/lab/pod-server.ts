// The one long-lived process of a lab pod, run inside the pod's network namespace: it serves every
// containerPort (TCP accepts, UDP echoes, SCTP accepts and echoes where the kernel has SCTP) on all
// of the pod's addresses, IPv4 and IPv6, and probes other addresses on request over its control socket.
//   node dist/lab/pod-server.js --control SOCK --ports '[{"port":80,"protocol":"TCP"}]'
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { unlinkSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";
import { ipFamily } from "../net/ip.js";
import { ControlRequestSchema, type ControlResponse, type ProbeResult } from "./probe-protocol.js";
import { probeSctp, serveSctp } from "./probe-sctp.js";

const PortsSchema = z.array(
  z.object({ port: z.number().int().min(1).max(65535), protocol: z.enum(["TCP", "UDP", "SCTP"]) }),
);
export type ServedPort = z.infer<typeof PortsSchema>[number];

// Errors that mean "something answered no": a closed port (RST / ICMP port unreachable) or a
// reject rule (ICMP unreachable / admin prohibited). A silent drop is a timeout instead.
const REFUSED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET", "EACCES", "EPERM"]);

function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} pod-server[${process.pid}]: ${msg}\n`);
}

function probeTcp(host: string, port: number, timeoutMs: number): Promise<{ result: ProbeResult; detail?: string }> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    const timer = setTimeout(() => finish({ result: "timeout" }), timeoutMs);
    let settled = false;
    function finish(r: { result: ProbeResult; detail?: string }): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    }
    s.on("connect", () => finish({ result: "connected" }));
    s.on("error", (e: NodeJS.ErrnoException) => {
      const code = e.code ?? e.message;
      finish(REFUSED.has(code) ? { result: "refused", detail: code } : { result: "timeout", detail: code });
    });
  });
}

/** UDP: connected means our datagram came back (the server echoes). Resent every 200 ms. */
function probeUdp(host: string, port: number, timeoutMs: number): Promise<{ result: ProbeResult; detail?: string }> {
  return new Promise((resolve) => {
    const s = createSocket(ipFamily(host) === 6 ? "udp6" : "udp4");
    const nonce = randomBytes(12).toString("hex");
    let settled = false;
    let resend: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => finish({ result: "timeout" }), timeoutMs);
    function finish(r: { result: ProbeResult; detail?: string }): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (resend) clearInterval(resend);
      s.close();
      resolve(r);
    }
    const onErr = (e: NodeJS.ErrnoException) => {
      const code = e.code ?? e.message;
      finish(REFUSED.has(code) ? { result: "refused", detail: code } : { result: "timeout", detail: code });
    };
    s.on("error", onErr);
    s.on("message", (msg) => {
      if (msg.toString("utf8") === nonce) finish({ result: "connected" });
    });
    const send = () => {
      if (!settled) s.send(nonce, (err) => err && onErr(err as NodeJS.ErrnoException));
    };
    // A connected socket gets ICMP errors (port unreachable) reported on the next send.
    s.connect(port, host, (err?: Error) => {
      if (err) return onErr(err as NodeJS.ErrnoException);
      send();
      resend = setInterval(send, 200);
    });
  });
}

async function handle(line: string, ports: readonly ServedPort[]): Promise<ControlResponse> {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { ok: false, error: "request is not JSON" };
  }
  const req = ControlRequestSchema.safeParse(json);
  if (!req.success) return { ok: false, error: `bad request: ${req.error.issues[0]?.message}` };
  const r = req.data;
  if (r.op === "ping") return { ok: true, pid: process.pid, ports: [...ports] };
  if (ipFamily(r.host) === null) return { ok: false, error: `"${r.host}" is not an IP address` };
  const t0 = performance.now();
  const out =
    r.protocol === "TCP"
      ? await probeTcp(r.host, r.port, r.timeoutMs)
      : r.protocol === "UDP"
        ? await probeUdp(r.host, r.port, r.timeoutMs)
        : await probeSctp(r.host, r.port, r.timeoutMs);
  if ("error" in out) return { ok: false, error: out.error };
  const ms = Math.round((performance.now() - t0) * 100) / 100;
  return { ok: true, result: out.result, ms, ...(out.detail ? { detail: out.detail } : {}) };
}

function listenTcp(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer((c) => {
      // Accepting is the service; keep it open briefly so probes see a live connection.
      c.on("error", () => undefined);
      c.setTimeout(5000, () => c.destroy());
      c.on("data", (d) => c.write(d));
    });
    srv.once("error", reject);
    // "::" without ipv6Only takes IPv4 too (as mapped addresses): every address of the pod.
    srv.listen({ port, host: "::", ipv6Only: false }, () => resolve(srv));
  });
}

function listenUdp(port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: "udp6", ipv6Only: false });
    s.once("error", reject);
    s.on("message", (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
    s.bind(port, "::", () => {
      s.removeListener("error", reject);
      s.on("error", (e) => log(`udp ${port}: ${e.message}`));
      resolve(s);
    });
  });
}

export async function serve(control: string, ports: readonly ServedPort[]): Promise<void> {
  const closers: Array<() => void> = [];
  for (const p of ports) {
    if (p.protocol === "TCP") {
      const s = await listenTcp(p.port);
      closers.push(() => s.close());
    } else if (p.protocol === "UDP") {
      const s = await listenUdp(p.port);
      closers.push(() => s.close());
    } else {
      // A kernel without SCTP still runs the pod: its other ports work, and probes say why SCTP does not.
      try {
        const s = await serveSctp(p.port, log);
        closers.push(() => s.close());
      } catch (e) {
        log(`${(e as Error).message}; not served`);
      }
    }
  }
  try {
    unlinkSync(control);
  } catch {
    // no stale socket
  }
  const ctl = createServer((c) => {
    let buf = "";
    c.on("error", () => undefined);
    c.setEncoding("utf8").on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = "";
      void handle(line, ports).then((resp) => c.end(JSON.stringify(resp) + "\n"));
    });
  });
  await new Promise<void>((resolve, reject) => {
    ctl.once("error", reject);
    ctl.listen(control, () => resolve());
  });
  log(`serving ${ports.map((p) => `${p.protocol}/${p.port}`).join(", ") || "no ports"}; control ${control}`);
  const stop = () => {
    for (const c of closers) c();
    ctl.close();
    try {
      unlinkSync(control);
    } catch {
      // gone already
    }
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { control: { type: "string" }, ports: { type: "string", default: "[]" } } });
  if (!values.control) {
    process.stderr.write("pod-server: --control SOCK is required\n");
    process.exit(2);
  }
  const ports = PortsSchema.parse(JSON.parse(values.ports ?? "[]"));
  serve(values.control, ports).catch((e: unknown) => {
    log(`cannot start: ${(e as Error).message}`);
    process.exit(1);
  });
}
