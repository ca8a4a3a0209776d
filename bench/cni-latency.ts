// CNI ADD/DEL latency: weft (plugin + agent) against the reference bridge + host-local plugins,
// in the same run, alternating, each invoked exactly as a runtime does (exec with CNI env vars,
// config on stdin) from inside one "host" network namespace made for the run.
//   node dist-bench/bench/cni-latency.js [--n 100] [--concurrent 50] [--parallel 8] [--rounds 3]
import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { addNetns, barChart, delNetns, machine, summary, timeCommand, writeSection } from "./lib.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg("n", 100);
const CONC = arg("concurrent", 50);
const PAR = arg("parallel", 8);
const ROUNDS = arg("rounds", 3);
// One tag for the outer process and the inner one it starts, so cleanup finds every namespace.
const tagArg = process.argv.indexOf("--tag");
const tag = tagArg >= 0 ? process.argv[tagArg + 1] : Math.random().toString(36).slice(2, 7);

interface Subject {
  name: string;
  conf: string;
  binDir: string;
}

function env(cmd: string, id: string, netns: string | undefined, binDir: string): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: id,
    CNI_IFNAME: "eth0",
    CNI_PATH: binDir,
  };
  if (netns) e.CNI_NETNS = netns;
  return e; // NODE_EXTRA_CA_CERTS deliberately absent, as under a container runtime
}

async function invoke(s: Subject, cmd: "ADD" | "DEL", id: string, netns: string): Promise<number> {
  const plugin = join(s.binDir, JSON.parse(s.conf).type as string);
  const r = await timeCommand([plugin], env(cmd, id, netns, s.binDir), s.conf);
  if (r.code !== 0) throw new Error(`${s.name} ${cmd} ${id} failed (${r.code}): ${r.stdout}${r.stderr}`);
  return r.ms;
}

async function inner(work: string): Promise<void> {
  const binDir = join(work, "bin");
  const sock = join(work, "weft.sock");
  const agent = spawn(
    process.execPath,
    [
      join(root, "dist", "cli", "main.js"),
      "agent",
      "--node",
      "bench",
      "--store",
      "local",
      "--state-dir",
      join(work, "state"),
      "--socket",
      sock,
      "--pod-cidr",
      "10.77.0.0/16",
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  try {
    for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    if (!existsSync(sock)) throw new Error("agent did not open its socket");
    // The agent answers ADD with "try again later" (11) until it can serve it; STATUS says when.
    const statusConf = JSON.stringify({ cniVersion: "1.1.0", name: "weftbench", type: "weft", socket: sock });
    for (let i = 0; ; i++) {
      const st = await timeCommand(
        [join(binDir, "weft")],
        { PATH: process.env.PATH, CNI_COMMAND: "STATUS", CNI_PATH: binDir },
        statusConf,
      );
      if (st.code === 0) break;
      if (i > 200) throw new Error(`agent not ready: ${st.stdout}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const weft: Subject = {
      name: "weft",
      binDir,
      conf: JSON.stringify({ cniVersion: "1.0.0", name: "weftbench", type: "weft", socket: sock }),
    };
    const ref: Subject = {
      name: "bridge+host-local",
      binDir,
      conf: JSON.stringify({
        cniVersion: "1.0.0",
        name: "refbench",
        type: "bridge",
        bridge: "cniref0",
        isGateway: true,
        ipMasq: false,
        ipam: { type: "host-local", subnet: "10.78.0.0/16", dataDir: join(work, "host-local") },
      }),
    };
    const subjects = [weft, ref];
    // Warm-up (page cache, the bridge device itself).
    for (const s of subjects) {
      const ns = await addNetns(`wb-${tag}-warm`);
      await invoke(s, "ADD", "warm", ns);
      await invoke(s, "DEL", "warm", ns);
      await delNetns(`wb-${tag}-warm`);
    }
    const add: Record<string, number[]> = { weft: [], "bridge+host-local": [] };
    const del: Record<string, number[]> = { weft: [], "bridge+host-local": [] };
    // Sequential: pods are added alternately (weft, reference, weft, ...), then deleted alternately.
    const pods: { s: Subject; id: string; ns: string; nsName: string }[] = [];
    for (let i = 0; i < N; i++) {
      for (const s of subjects) {
        const nsName = `wb-${tag}-${s === weft ? "w" : "r"}${i}`;
        const ns = await addNetns(nsName);
        const id = `${s === weft ? "w" : "r"}${i}`;
        add[s.name].push(await invoke(s, "ADD", id, ns));
        pods.push({ s, id, ns, nsName });
      }
    }
    for (const p of pods) {
      del[p.s.name].push(await invoke(p.s, "DEL", p.id, p.ns));
      await delNetns(p.nsName);
    }
    // Concurrent: CONC ADDs, PAR at a time; rounds alternate between the two.
    const conc: Record<string, number[]> = { weft: [], "bridge+host-local": [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of subjects) {
        const names = Array.from({ length: CONC }, (_, i) => `wb-${tag}-c${s === weft ? "w" : "r"}${i}`);
        const paths = await Promise.all(names.map((n) => addNetns(n)));
        let next = 0;
        const t0 = process.hrtime.bigint();
        await Promise.all(
          Array.from({ length: PAR }, async () => {
            while (next < CONC) {
              const i = next++;
              await invoke(s, "ADD", `c${round}-${i}`, paths[i]);
            }
          }),
        );
        conc[s.name].push(Number(process.hrtime.bigint() - t0) / 1e6);
        for (let i = 0; i < CONC; i++) await invoke(s, "DEL", `c${round}-${i}`, paths[i]);
        await Promise.all(names.map((n) => delNetns(n)));
      }
    }
    const out = {
      add: { weft: summary(add.weft), ref: summary(add["bridge+host-local"]) },
      del: { weft: summary(del.weft), ref: summary(del["bridge+host-local"]) },
      concurrent: { weft: summary(conc.weft), ref: summary(conc["bridge+host-local"]) },
    };
    writeFileSync(join(work, "result.json"), JSON.stringify(out));
  } finally {
    agent.kill("SIGTERM");
  }
}

async function outer(): Promise<void> {
  const plugin = join(root, "dist", "weft-cni");
  if (!existsSync(plugin)) throw new Error("dist/weft-cni is missing: run `bash scripts/setup.sh` first");
  const work = mkdtempSync(join(tmpdir(), "weft-bench-"));
  const binDir = join(work, "bin");
  const host = `wb-${tag}-host`;
  const hostPath = await addNetns(host);
  try {
    await import("node:fs").then((fs) => fs.mkdirSync(binDir));
    // As install-cni places them: the native forwarder, and the full plugin it falls back to.
    copyFileSync(plugin, join(binDir, "weft"));
    copyFileSync(`${plugin}-full`, join(binDir, "weft-full"));
    for (const p of ["bridge", "host-local", "loopback"]) copyFileSync(join("/usr/lib/cni", p), join(binDir, p));
    await import("node:fs").then((fs) => {
      fs.chmodSync(join(binDir, "weft"), 0o755);
      fs.chmodSync(join(binDir, "weft-full"), 0o755);
    });
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const code = await new Promise<number>((resolve) => {
      const c = spawn(
        "nsenter",
        [
          `--net=${hostPath}`,
          "--",
          process.execPath,
          fileURLToPath(import.meta.url),
          "--inner",
          work,
          "--tag",
          tag,
          ...process.argv.slice(2),
        ],
        { stdio: "inherit", env },
      );
      c.on("close", (c2) => resolve(c2 ?? 1));
    });
    if (code !== 0) throw new Error(`benchmark run failed (exit ${code})`);
    const r = JSON.parse(await import("node:fs").then((fs) => fs.readFileSync(join(work, "result.json"), "utf8")));
    report(r);
  } finally {
    // Pod namespaces the inner run made and could not remove (it failed half-way), then the host.
    const { execFileSync } = await import("node:child_process");
    const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
      .split("\n")
      .map((l) => l.split(" ")[0])
      .filter((n) => n.startsWith(`wb-${tag}-`));
    for (const n of left) await delNetns(n);
    rmSync(work, { recursive: true, force: true });
  }
}

type S = ReturnType<typeof summary>;
function report(r: { add: { weft: S; ref: S }; del: { weft: S; ref: S }; concurrent: { weft: S; ref: S } }): void {
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  const row = (what: string, w: number, f: number) =>
    `| ${what} | ${w.toFixed(1)} ms | ${f.toFixed(1)} ms | ${ratio(w, f)}x | ${w / f <= 0.8 ? "met" : "not met"} |`;
  const date = new Date().toISOString().slice(0, 10);
  const body = `## CNI ADD/DEL latency (bench/cni-latency.ts)

${date} on ${machine()}. n = ${r.add.weft.n} sequential ADDs and DELs per plugin, alternating weft and the
reference bridge + host-local (Debian containernetworking-plugins 1.1.1); then ${CONC} ADDs ${PAR} at a
time, ${ROUNDS} rounds each, alternating (median of rounds). Every plugin is exec'd as a runtime does,
from one network namespace made for the run, NODE_EXTRA_CA_CERTS unset. weft is what install-cni
installs: the native forwarder (src/plugin/forwarder.c), which hands the call to the running agent,
where the TypeScript plugin and the agent's ADD run in process. Goal: weft <= 0.8x the reference.

| measure | weft | reference | weft / reference | goal 0.8x |
|---|---|---|---|---|
${row("ADD p50", r.add.weft.p50, r.add.ref.p50)}
${row("ADD p99", r.add.weft.p99, r.add.ref.p99)}
${row("DEL p50", r.del.weft.p50, r.del.ref.p50)}
${row("DEL p99", r.del.weft.p99, r.del.ref.p99)}
${row(`${CONC} ADDs, ${PAR} at a time`, r.concurrent.weft.p50, r.concurrent.ref.p50)}

![CNI latency](bench-cni-latency.svg)
![Concurrent ADDs](bench-cni-concurrent.svg)
`;
  writeSection(join(root, "docs", "benchmarks.md"), "cni-latency", body);
  const bars = [
    { label: "ADD p50", value: r.add.weft.p50, group: "weft" },
    { label: "ADD p50 ", value: r.add.ref.p50, group: "bridge+host-local" },
    { label: "ADD p99", value: r.add.weft.p99, group: "weft" },
    { label: "ADD p99 ", value: r.add.ref.p99, group: "bridge+host-local" },
    { label: "DEL p50", value: r.del.weft.p50, group: "weft" },
    { label: "DEL p50 ", value: r.del.ref.p50, group: "bridge+host-local" },
    { label: "DEL p99", value: r.del.weft.p99, group: "weft" },
    { label: "DEL p99 ", value: r.del.ref.p99, group: "bridge+host-local" },
  ];
  writeFileSync(join(root, "docs", "bench-cni-latency.svg"), barChart("CNI latency (lower is better)", "ms", bars));
  const bars2 = [
    { label: `${CONC} ADDs, ${PAR} parallel`, value: r.concurrent.weft.p50, group: "weft" },
    { label: `${CONC} ADDs, ${PAR} parallel `, value: r.concurrent.ref.p50, group: "bridge+host-local" },
  ];
  writeFileSync(
    join(root, "docs", "bench-cni-concurrent.svg"),
    barChart("Concurrent ADDs, total time (lower is better)", "ms", bars2),
  );
  process.stdout.write(body + "\n");
}

const i = process.argv.indexOf("--inner");
(i >= 0 ? inner(process.argv[i + 1]) : outer()).catch((e: unknown) => {
  process.stderr.write(`cni-latency: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
