// Test network namespaces with guaranteed cleanup: each one is removed by remove(), by
// removeAllNetns() (call it from `after`), and as a last resort when the process exits.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { run, runStatus, type RunOptions } from "../kernel/exec.js";
import { isHostNetns } from "../kernel/nsfile.js";
import { netnsName } from "../kernel/validate.js";

export interface TestNetns {
  name: string;
  /** /run/netns/NAME */
  path: string;
  /** Runs argv inside the namespace; rejects on a non-zero exit. */
  exec(argv: string[], opts?: Omit<RunOptions, "netns">): Promise<string>;
  /** Runs argv inside the namespace; resolves with the exit code. */
  status(argv: string[], opts?: Omit<RunOptions, "netns">): Promise<{ code: number; stdout: string; stderr: string }>;
  remove(): Promise<void>;
}

const live = new Set<string>();
let exitHookInstalled = false;

function removeSync(name: string): void {
  if (isHostNetns(`/run/netns/${name}`)) return; // never the machine's own, whatever bound the name
  try {
    execFileSync("ip", ["netns", "del", name], { stdio: "ignore" });
  } catch {
    /* already gone */
  }
}

/** A unique name: wt-<prefix>-<random>, short enough for every tool. */
export function uniqueName(prefix = "t"): string {
  return netnsName(`wt-${prefix}-${randomBytes(4).toString("hex")}`);
}

export async function createNetns(prefix = "t", opts: { loUp?: boolean } = {}): Promise<TestNetns> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const n of live) removeSync(n);
    });
  }
  const name = uniqueName(prefix);
  await run(["ip", "netns", "add", name]);
  live.add(name);
  const path = `/run/netns/${name}`;
  if (opts.loUp !== false) await run(["ip", "link", "set", "lo", "up"], { netns: path });
  return {
    name,
    path,
    exec: (argv, o = {}) => run(argv, { ...o, netns: path }),
    status: (argv, o = {}) => runStatus(argv, { ...o, netns: path }),
    remove: async () => {
      if (!live.has(name)) return;
      live.delete(name);
      if (isHostNetns(path))
        throw new Error(`refusing to delete ${name}: it names the machine's own network namespace`);
      await runStatus(["ip", "netns", "del", name]);
    },
  };
}

/** Removes every namespace this process created and has not removed yet. */
export async function removeAllNetns(): Promise<void> {
  const names = [...live];
  live.clear();
  const host = names.filter((n) => isHostNetns(`/run/netns/${n}`));
  await Promise.all(names.filter((n) => !host.includes(n)).map((n) => runStatus(["ip", "netns", "del", n])));
  if (host.length) throw new Error(`refusing to delete ${host.join(", ")}: the machine's own network namespace`);
}

// ---- Reading a namespace's state, as a user would check it (ip -j, ping) ----
export interface IpAddrJson {
  ifindex: number;
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
}

/** `ip -j addr show dev IF` in the namespace, or null when the interface does not exist. */
export async function linkAddr(ns: TestNetns, ifname: string): Promise<IpAddrJson | null> {
  const r = await ns.status(["ip", "-j", "addr", "show", "dev", ifname]);
  if (r.code !== 0) return null;
  const [x] = JSON.parse(r.stdout) as IpAddrJson[];
  return x ?? null;
}

export async function globalAddrs(ns: TestNetns, ifname: string): Promise<string[]> {
  const l = await linkAddr(ns, ifname);
  return (l?.addr_info ?? [])
    .filter((a) => a.scope === "global")
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();
}

export async function routes(ns: TestNetns, family: 4 | 6): Promise<{ dst: string; gateway?: string; dev?: string }[]> {
  return JSON.parse(await ns.exec(["ip", "-j", `-${family}`, "route", "show"])) as {
    dst: string;
    gateway?: string;
    dev?: string;
  }[];
}

/** Names of weft host veths (wf + 11 hex) in the namespace. */
export async function weftLinks(ns: TestNetns): Promise<string[]> {
  const links = JSON.parse(await ns.exec(["ip", "-j", "link", "show"])) as { ifname: string }[];
  return links
    .map((l) => l.ifname)
    .filter((n) => /^wf[0-9a-f]{11}$/.test(n))
    .sort();
}

/** One ping (busybox: the machine has no iputils) from `from` to `addr`; true when answered. */
export async function ping(from: TestNetns, addr: string, timeoutS = 2): Promise<boolean> {
  const six = addr.includes(":");
  const r = await from.status(["busybox", "ping", ...(six ? ["-6"] : []), "-c", "1", "-W", String(timeoutS), addr]);
  return r.code === 0;
}
