// Test support: a PodKernel living in a child process inside a test "host" namespace, the way
// the agent runs (its own namespace is the host side). Calls go over stdin/stdout as JSON lines;
// errors come back with their name, message, code and stderr. Calls sent without waiting for
// earlier answers run concurrently in the child.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { TestNetns } from "./netns.js";

const here = dirname(fileURLToPath(import.meta.url));
const kernel = join(here, "..", "kernel");
const MODULES = {
  netlink: [join(kernel, "pod", "netlink", "kernel.js"), "NetlinkKernel"],
  iproute: [join(kernel, "pod", "iproute", "kernel.js"), "IprouteKernel"],
} as const;
export type KernelImpl = keyof typeof MODULES;

export interface RemoteError {
  name: string;
  message: string;
  code?: string;
  stderr?: string;
}

export class RemoteKernelError extends Error {
  constructor(readonly remote: RemoteError) {
    super(remote.message);
    this.name = remote.name;
  }
}

export interface KernelHost {
  call<T = unknown>(method: string, ...args: unknown[]): Promise<T>;
  close(): Promise<void>;
}

const SERVER = (module: string, cls: string) => `
const { ${cls}: K } = await import(${JSON.stringify(module)});
const k = new K();
const { createInterface } = await import("node:readline");
// Calls run concurrently, as the agent makes them: each line starts one, answers come as they end.
const running = new Set();
// wirePodLooked: wirePod, then at once (before anything else runs here) the operational state
// of both veth ends as a link dump (what \`ip link show\` reads) shows it: a person looking a few
// milliseconds later could miss a link that was not up yet when the ADD returned.
const { NetlinkSocket } = await import(${JSON.stringify(join(kernel, "netlink", "socket.js"))});
const m = await import(${JSON.stringify(join(kernel, "netlink", "message.js"))});
const { closeSync, openSync } = await import("node:fs");
const OPER = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"];
const operstate = (sock, name) => {
  for (const msg of sock.dump(18 /* RTM_GETLINK */, m.ifinfomsg({ family: 0 }), "list links")) {
    const a = m.parseAttrs(msg.payload, 16);
    if (msg.type === 16 && m.cstr(a.get(3 /* IFLA_IFNAME */)) === name) return OPER[a.get(16 /* IFLA_OPERSTATE */)?.readUInt8(0)] ?? "?";
  }
  return "missing";
};
const own = openSync("/proc/thread-self/ns/net", "r");
const looked = async (w) => {
  const result = await k.wirePod(w);
  const h = NetlinkSocket.open("host");
  const p = NetlinkSocket.openPath(w.netns, own);
  try { return { result, host: operstate(h, w.hostIf), pod: operstate(p, w.podIf) }; } finally { h.close(); p.close(); }
};
const serve = async ({ id, method, args }) => {
  const extra = method === "underlayMtu" ? [(n) => /^wf/.test(n)] : [];
  try {
    const result = method === "wirePodLooked" ? await looked(args[0]) : await k[method](...args, ...extra);
    process.stdout.write(JSON.stringify({ id, result: result ?? null }) + "\\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ id, error: { name: e.name, message: e.message, code: e.code, stderr: e.stderr } }) + "\\n");
  }
};
for await (const line of createInterface({ input: process.stdin })) {
  const p = serve(JSON.parse(line));
  running.add(p);
  void p.finally(() => running.delete(p));
}
await Promise.all(running);
k.close?.();
closeSync(own);
`;

/** Starts `impl` inside `host`; close() ends the child (by closing its stdin, then by PID). */
export function startKernelHost(host: TestNetns, impl: KernelImpl): KernelHost {
  const [module, cls] = MODULES[impl];
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const child: ChildProcessWithoutNullStreams = spawn(
    "nsenter",
    [`--net=${host.path}`, "--", process.execPath, "--input-type=module", "-e", SERVER(module, cls)],
    { env },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 1;
  createInterface({ input: child.stdout }).on("line", (line) => {
    const msg = JSON.parse(line) as { id: number; result?: unknown; error?: RemoteError };
    const w = waiting.get(msg.id);
    waiting.delete(msg.id);
    if (msg.error) w?.reject(new RemoteKernelError(msg.error));
    else w?.resolve(msg.result);
  });
  const exited = new Promise<void>((r) =>
    child.on("close", () => {
      for (const w of waiting.values()) w.reject(new Error(`kernel host exited: ${stderr}`));
      waiting.clear();
      r();
    }),
  );
  return {
    call: <T>(method: string, ...args: unknown[]) =>
      new Promise<T>((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.stdin.write(JSON.stringify({ id, method, args }) + "\n");
      }),
    close: async () => {
      child.stdin.end();
      const t = setTimeout(() => {
        if (child.pid) process.kill(child.pid);
      }, 3000);
      await exited;
      clearTimeout(t);
    },
  };
}
