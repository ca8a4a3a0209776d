// The pod server's control protocol (a unix socket in the lab directory): one JSON line in, one
// JSON line out, per connection. Probes run inside the source pod's namespace without starting a
// process each.
import { createConnection } from "node:net";
import { z } from "zod";

export const PROBE_PROTOCOLS = ["TCP", "UDP", "SCTP"] as const;
export type ProbeProtocol = (typeof PROBE_PROTOCOLS)[number];
export type ProbeResult = "connected" | "refused" | "timeout";

export const ControlRequestSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("ping") }),
  z.object({
    op: z.literal("probe"),
    host: z.string(),
    port: z.number().int().min(1).max(65535),
    protocol: z.enum(PROBE_PROTOCOLS),
    timeoutMs: z.number().int().min(1).max(600_000),
  }),
]);
export type ControlRequest = z.infer<typeof ControlRequestSchema>;

export type ControlResponse =
  | { ok: true; pid: number; ports: Array<{ port: number; protocol: string }> }
  | { ok: true; result: ProbeResult; ms: number; detail?: string }
  | { ok: false; error: string };

/** Sends one request to a pod server and returns its answer. */
export function controlCall(socket: string, req: ControlRequest, timeoutMs: number): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socket);
    let buf = "";
    let settled = false;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      c.destroy();
      fn();
    };
    const timer = setTimeout(
      () => done(() => reject(new Error(`pod server on ${socket} did not answer within ${timeoutMs} ms`))),
      timeoutMs,
    );
    c.on("error", (e) =>
      done(() => reject(new Error(`pod server on ${socket}: ${(e as NodeJS.ErrnoException).code ?? e.message}`))),
    );
    c.on("connect", () => c.write(JSON.stringify(req) + "\n"));
    c.setEncoding("utf8").on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        done(() => {
          try {
            resolve(JSON.parse(line) as ControlResponse);
          } catch {
            reject(new Error(`pod server on ${socket} sent something that is not JSON`));
          }
        });
      }
    });
    c.on("end", () => done(() => reject(new Error(`pod server on ${socket} closed without answering`))));
  });
}
