// Benchmark, not a test: wirePod + deleteHostLinks, NetlinkKernel against IprouteKernel,
// interleaved in one run. Makes its own namespaces (wt-bench-*), runs itself inside the "host"
// one, removes them all. Run as root: node dist-bench/bench/micro/pod-kernel.js [rounds]
// (built by `npx tsc -p tsconfig.bench.json`; not run by bench/run.sh, which runs the docs benchmarks)
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { IprouteKernel } from "../../src/kernel/pod/iproute/kernel.js";
import type { PodKernel, PodWiring } from "../../src/kernel/pod/types.js";
import { NetlinkKernel } from "../../src/kernel/pod/netlink/kernel.js";

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const ms = (x: number) => x.toFixed(2);

async function inner(podNs: string[], rounds: number): Promise<void> {
  const kernels: [string, PodKernel][] = [
    ["iproute", new IprouteKernel()],
    ["netlink", new NetlinkKernel()],
  ];
  await kernels[0][1].enableForwarding();
  const t: Record<string, { add: number[]; del: number[] }> = {
    iproute: { add: [], del: [] },
    netlink: { add: [], del: [] },
  };
  const wiring = (i: number, ns: string): PodWiring => ({
    hostIf: `wf${i.toString(16).padStart(11, "0")}`,
    hostMac: "02:00:00:aa:00:01",
    podIf: "eth0",
    podMac: "02:00:00:bb:00:01",
    netns: ns,
    mtu: 1450,
    addresses: [
      { family: 4, address: `10.80.0.${2 + (i % 200)}`, prefix: 32 },
      { family: 6, address: `fd80::${(2 + i).toString(16)}`, prefix: 128 },
    ],
    extraRoutes: [],
  });
  for (let r = 0; r < rounds + 2; r++) {
    // two warm-up rounds
    for (const [k, [name, kernel]] of kernels.entries()) {
      const w = wiring(r * 2 + k, podNs[k]);
      const a0 = performance.now();
      await kernel.wirePod(w);
      const a1 = performance.now();
      await kernel.deleteHostLinks([w.hostIf]);
      const a2 = performance.now();
      if (r >= 2) {
        t[name].add.push(a1 - a0);
        t[name].del.push(a2 - a1);
      }
    }
  }
  // Concurrency: 8 pods wired then deleted at once (what the agent sees under load).
  const conc: Record<string, { add: number; del: number }> = {};
  for (const [k, [name, kernel]] of kernels.entries()) {
    const ws = Array.from({ length: 8 }, (_, j) => wiring(1000 + k * 100 + j, podNs[2 + j]));
    const a0 = performance.now();
    await Promise.all(ws.map((w) => kernel.wirePod(w)));
    const a1 = performance.now();
    await Promise.all(ws.map((w) => kernel.deleteHostLinks([w.hostIf])));
    conc[name] = { add: a1 - a0, del: performance.now() - a1 };
  }
  (kernels[1][1] as NetlinkKernel).close();
  for (const name of ["iproute", "netlink"]) {
    const { add, del } = t[name];
    const sum = add.map((x, i) => x + del[i]);
    console.log(
      `${name.padEnd(8)} median of ${rounds}: wirePod ${ms(median(add))} ms, deleteHostLinks ${ms(median(del))} ms, both ${ms(median(sum))} ms; 8 at once: wire ${ms(conc[name].add)} ms, delete ${ms(conc[name].del)} ms`,
    );
  }
}

if (process.argv[2] === "--inner") {
  await inner(process.argv[4].split(","), Number(process.argv[3]));
} else {
  const rounds = Number(process.argv[2] ?? 50);
  const tag = randomBytes(3).toString("hex");
  const names = [`wt-bench-${tag}-h`, ...Array.from({ length: 10 }, (_, i) => `wt-bench-${tag}-p${i}`)];
  try {
    for (const n of names) execFileSync("ip", ["netns", "add", n]);
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const r = spawnSync(
      "nsenter",
      [
        `--net=/run/netns/${names[0]}`,
        "--",
        process.execPath,
        fileURLToPath(import.meta.url),
        "--inner",
        String(rounds),
        names
          .slice(1)
          .map((n) => `/run/netns/${n}`)
          .join(","),
      ],
      { stdio: "inherit", env },
    );
    process.exitCode = r.status ?? 1;
  } finally {
    for (const n of names) spawnSync("ip", ["netns", "del", n]);
  }
}
