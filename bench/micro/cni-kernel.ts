// Benchmark, not a test: CNI ADD/DEL end to end, as a runtime sees them: the compiled plugin
// (dist/weft-cni) against a node agent using IprouteKernel or NetlinkKernel, and the reference
// bridge + host-local plugins, all in one run. Makes its own namespaces (wt-cnib-*), runs inside
// the "host" one, removes them. Run as root after tsc and the plugin build:
//   npx tsc -p tsconfig.bench.json && node dist-bench/bench/micro/cni-kernel.js [sequential-rounds]
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// dist/ (the build of src/, with the plugin) from dist-bench/bench/micro/.
const dist = join(here, "..", "..", "..", "dist");
const PLUGIN = join(dist, "weft-cni");
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

interface Target {
  name: string;
  exe: string;
  conf: Record<string, unknown>;
  stop(): Promise<void>;
}

function cni(exe: string, command: "ADD" | "DEL", id: string, netns: string, conf: unknown): Promise<number> {
  const env = {
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: "/usr/lib/cni",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}`,
  };
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(exe, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    c.stdout.on("data", (d: Buffer) => (out += d.toString()));
    c.stderr.on("data", (d: Buffer) => (out += d.toString()));
    c.on("close", (code) =>
      code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${exe} ${command} ${id}: exit ${code}: ${out}`)),
    );
    c.stdin.end(JSON.stringify(conf));
  });
}

async function agent(kernel: "iproute" | "netlink", work: string): Promise<Target> {
  const socket = join(work, `${kernel}.sock`);
  const [mod, cls] =
    kernel === "netlink"
      ? [join(dist, "kernel", "pod", "netlink", "kernel.js"), "NetlinkKernel"]
      : [join(dist, "kernel", "pod", "iproute", "kernel.js"), "IprouteKernel"];
  const script = `
    const { startAgent, makeLogger } = await import(${JSON.stringify(join(dist, "agent", "run.js"))});
    const { parsePool } = await import(${JSON.stringify(join(dist, "ipam", "addr.js"))});
    const { ${cls}: K } = await import(${JSON.stringify(mod)});
    const a = await startAgent({ node: "bench", stateDir: ${JSON.stringify(join(work, kernel))}, socket: ${JSON.stringify(socket)},
      pools: [parsePool(${JSON.stringify(kernel === "netlink" ? "10.91.0.0/16" : "10.92.0.0/16")})] }, makeLogger(), new K());
    process.once("SIGTERM", () => a.stop().finally(() => process.exit(0)));`;
  const env = { ...process.env, WEFT_LOG_LEVEL: "warn" };
  // Each agent in a namespace of its own (unshare execs node in place): one agent per namespace.
  const child = spawn("unshare", ["--net", "--", process.execPath, "--input-type=module", "-e", script], {
    env,
    stdio: ["ignore", "inherit", "inherit"],
  });
  for (let i = 0; i < 500 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 20));
  if (!existsSync(socket)) throw new Error(`agent (${kernel}) did not start`);
  await new Promise((r) => setTimeout(r, 200));
  return {
    name: `weft+${kernel}`,
    exe: PLUGIN,
    conf: { cniVersion: "1.0.0", name: `weft-${kernel}`, type: "weft", socket },
    stop: () =>
      new Promise((r) => {
        child.on("exit", () => r());
        if (child.pid) process.kill(child.pid, "SIGTERM");
      }),
  };
}

async function inner(rounds: number, tag: string): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "weft-cnib-"));
  const podNs: string[] = [];
  const newPod = () => {
    const n = `wt-cnib-${tag}-${podNs.length}`;
    execFileSync("ip", ["netns", "add", n]);
    podNs.push(n);
    return `/run/netns/${n}`;
  };
  const targets: Target[] = [];
  try {
    targets.push({
      name: "bridge+host-local",
      exe: "/usr/lib/cni/bridge",
      stop: async () => undefined,
      conf: {
        cniVersion: "1.0.0",
        name: "ref",
        type: "bridge",
        bridge: "cnib0",
        isGateway: true,
        ipMasq: false,
        ipam: { type: "host-local", ranges: [[{ subnet: "10.93.0.0/16" }]], dataDir: join(work, "host-local") },
      },
    });
    targets.push(await agent("iproute", work), await agent("netlink", work));
    const res: Record<string, { add: number[]; del: number[]; burst: number; burstDel: number }> = {};
    for (const t of targets) res[t.name] = { add: [], del: [], burst: 0, burstDel: 0 };
    // Sequential, interleaved across targets; two warm-up rounds.
    for (let r = 0; r < rounds + 2; r++) {
      for (const t of targets) {
        const ns = newPod();
        const id = `seq-${r}`;
        const add = await cni(t.exe, "ADD", id, ns, t.conf);
        const del = await cni(t.exe, "DEL", id, ns, t.conf);
        if (r >= 2) {
          res[t.name].add.push(add);
          res[t.name].del.push(del);
        }
      }
    }
    // 50 ADDs, 8 at a time.
    for (const t of targets) {
      const pods = Array.from({ length: 50 }, newPod);
      const pool = async (cmd: "ADD" | "DEL") => {
        let next = 0;
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: 8 }, async () => {
            while (next < pods.length) {
              const i = next++;
              await cni(t.exe, cmd, `burst-${i}`, pods[i], t.conf);
            }
          }),
        );
        return performance.now() - t0;
      };
      res[t.name].burst = await pool("ADD");
      res[t.name].burstDel = await pool("DEL");
    }
    const ref = res["bridge+host-local"];
    for (const t of targets) {
      const x = res[t.name];
      const ratio = (a: number, b: number) => (a / b).toFixed(2);
      console.log(
        `${t.name.padEnd(18)} ADD median ${median(x.add).toFixed(1)} ms (${ratio(median(x.add), median(ref.add))}x ref), DEL ${median(x.del).toFixed(1)} ms (${ratio(median(x.del), median(ref.del))}x), 50 ADDs 8 at a time ${x.burst.toFixed(0)} ms (${ratio(x.burst, ref.burst)}x), 50 DELs ${x.burstDel.toFixed(0)} ms (${ratio(x.burstDel, ref.burstDel)}x)`,
      );
    }
  } finally {
    for (const t of targets) await t.stop();
    for (const n of podNs) spawnSync("ip", ["netns", "del", n]);
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--inner") {
  await inner(Number(process.argv[3]), process.argv[4]);
} else {
  const rounds = Number(process.argv[2] ?? 30);
  const tag = randomBytes(3).toString("hex");
  const host = `wt-cnib-${tag}-h`;
  try {
    execFileSync("ip", ["netns", "add", host]);
    execFileSync("ip", ["-n", host, "link", "set", "lo", "up"]);
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const r = spawnSync(
      "nsenter",
      [
        `--net=/run/netns/${host}`,
        "--",
        process.execPath,
        fileURLToPath(import.meta.url),
        "--inner",
        String(rounds),
        tag,
      ],
      { stdio: "inherit", env },
    );
    process.exitCode = r.status ?? 1;
  } finally {
    spawnSync("ip", ["netns", "del", host]);
  }
}
