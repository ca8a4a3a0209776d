// `weft lab ...`: a whole virtual multi-node cluster on this machine (see src/lab/).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import { Command, InvalidArgumentError, Option } from "commander";
import { LabError, labDown, labUp, requireLab } from "../lab/lab.js";
import { LabNames, netnsPathOf } from "../lab/names.js";
import { PROBE_PROTOCOLS, type ProbeProtocol } from "../lab/probe-protocol.js";
import { checkProtocol, defaultFamily, findPod, matrixJson, matrixTable, probeMatrix, probeOne } from "../lab/probe.js";
import { findRealPod, realPods, withProbeServers } from "../lab/realnode/index.js";
import { BACKENDS, type Backend, type LabSettings } from "../lab/state.js";
import { childEnv } from "../lab/procs.js";
import { UserError } from "./errors.js";

function intArg(flag: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || !Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${flag} must be an integer from ${min} to ${max}`);
    return n;
  };
}

function protocolArg(v: string): ProbeProtocol {
  const p = v.toUpperCase();
  if (!(PROBE_PROTOCOLS as readonly string[]).includes(p)) throw new InvalidArgumentError(`use TCP, UDP or SCTP`);
  return p as ProbeProtocol;
}

function familyArg(v: string): 4 | 6 {
  if (v !== "4" && v !== "6") throw new InvalidArgumentError("use 4 or 6");
  return Number(v) as 4 | 6;
}

function outputArg(v: string): "json" {
  if (v !== "json") throw new InvalidArgumentError(`only "json" is supported`);
  return "json";
}

/** Lab errors keep their exit code (2 = error) and become the contract's one-line error. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof LabError) throw new UserError(e.message, e.exitCode);
    if (e instanceof UserError) throw e;
    throw new UserError((e as Error).message, 2);
  }
}

const progress = (line: string) => process.stderr.write(`weft lab: ${line}\n`);

export function registerLab(program: Command): void {
  const lab = program
    .command("lab")
    .description("a virtual multi-node cluster on this machine, made of network namespaces");

  lab
    .command("up")
    .description("make the lab (or check it is complete): node namespaces on a private underlay, etcd, agents, kubelet")
    .option("--nodes <n>", "number of nodes", intArg("--nodes", 1, 50), 2)
    .addOption(new Option("--backend <b>", "cross-node backend").choices([...BACKENDS]).default("vxlan"))
    .option("--dual-stack", "IPv4 and IPv6 (underlay and pods)", false)
    .addOption(new Option("--etcd-members <n>", "lab etcd members").choices(["1", "3"]).default("1"))
    .addOption(
      new Option("--store <s>", "the lab's cluster store (default: etcd; kubernetes with --kubelet real)").choices([
        "etcd",
        "kubernetes",
      ]),
    )
    .addOption(
      new Option(
        "--kubelet <k>",
        "lab: weft's own kubelet and agents; real: containerd + kubelet 1.20 per node, kube-controller-manager and kube-scheduler (weft installed with kubectl apply -f deploy/weft.yaml)",
      )
        .choices(["lab", "real"])
        .default("lab"),
    )
    .option(
      "--racks <r>",
      "bgp: split the nodes into racks, each on its own L2 segment behind an FRR top-of-rack router, with an external namespace behind the ToRs",
      intArg("--racks", 1, 9),
    )
    .addOption(
      new Option(
        "--tor-mode <m>",
        "with --racks: ebgp (an AS per rack) or rr (each ToR an iBGP route reflector for its rack)",
      ).choices(["ebgp", "rr"]),
    )
    .action(
      async (o: {
        racks?: number;
        torMode?: "ebgp" | "rr";
        nodes: number;
        backend: Backend;
        dualStack: boolean;
        etcdMembers: string;
        store?: "etcd" | "kubernetes";
        kubelet: "lab" | "real";
      }) => {
        const settings: LabSettings = {
          nodes: o.nodes,
          backend: o.backend,
          dualStack: o.dualStack,
          etcdMembers: o.etcdMembers === "3" ? 3 : 1,
          store: o.store ?? (o.kubelet === "real" ? "kubernetes" : "etcd"),
          kubelet: o.kubelet,
          ...(o.racks !== undefined ? { racks: o.racks } : {}),
          ...(o.torMode !== undefined ? { torMode: o.torMode } : {}),
        };
        await guard(() => labUp(LabNames.fromEnv(), settings, progress));
      },
    );

  lab
    .command("down")
    .description("remove everything the lab made")
    .action(async () => {
      const had = await guard(() => labDown(LabNames.fromEnv(), progress));
      progress(had ? "lab removed" : "no lab was running");
    });

  lab
    .command("kubeconfig")
    .description("print a kubeconfig for the lab's API server (--store kubernetes)")
    .action(async () => {
      const text = await guard(async () => {
        const st = requireLab(LabNames.fromEnv());
        if (!st.apiserver)
          throw new LabError(
            "this lab runs on its etcd store and has no API server: start it with `weft lab up --store kubernetes`",
          );
        return readFileSync(st.apiserver.kubeconfig, "utf8");
      });
      process.stdout.write(text);
    });

  lab
    .command("probe <from> <to>")
    .description("try to connect from pod NS/FROM to pod NS/TO; exit 0 connected, 1 not, 2 error")
    .requiredOption("--port <p>", "destination port", intArg("--port", 1, 65535))
    .option("--protocol <proto>", "TCP, UDP or SCTP", protocolArg, "TCP" as ProbeProtocol)
    .option("--family <f>", "4 or 6 (default: the cluster's first family)", familyArg)
    .option("--timeout-ms <n>", "how long to wait", intArg("--timeout-ms", 1, 600_000), 1000)
    .option("-o, --output <fmt>", "json", outputArg)
    .action(
      async (
        from: string,
        to: string,
        o: { port: number; protocol: ProbeProtocol; family?: 4 | 6; timeoutMs: number; output?: "json" },
      ) => {
        const r = await guard(async () => {
          const st = requireLab(LabNames.fromEnv());
          await checkProtocol(st, o.protocol);
          const spec = {
            port: o.port,
            protocol: o.protocol,
            timeoutMs: o.timeoutMs,
            family: o.family ?? defaultFamily(st),
          };
          if (st.settings.kubelet === "real") {
            const a = await findRealPod(st, from);
            const b = await findRealPod(st, to);
            return withProbeServers(st, [a], () => probeOne(a, b, spec));
          }
          return probeOne(findPod(st, from), findPod(st, to), spec);
        });
        if (o.output === "json") process.stdout.write(JSON.stringify(r) + "\n");
        else process.stdout.write(`${r.from} -> ${r.to} ${r.protocol}/${r.port}: ${r.result} (${r.ms} ms)\n`);
        process.exitCode = r.connected ? 0 : 1;
      },
    );

  lab
    .command("matrix")
    .description("every pod to every pod (itself included), in parallel")
    .option("--port <p>", "destination port", intArg("--port", 1, 65535), 80)
    .option("--protocol <proto>", "TCP, UDP or SCTP", protocolArg, "TCP" as ProbeProtocol)
    .option("--family <f>", "4 or 6 (default: the cluster's first family)", familyArg)
    .option("--timeout-ms <n>", "how long each probe waits", intArg("--timeout-ms", 1, 600_000), 1000)
    .option("-o, --output <fmt>", "json", outputArg)
    .action(
      async (o: { port: number; protocol: ProbeProtocol; family?: 4 | 6; timeoutMs: number; output?: "json" }) => {
        const m = await guard(async () => {
          const st = requireLab(LabNames.fromEnv());
          await checkProtocol(st, o.protocol);
          const spec = {
            port: o.port,
            protocol: o.protocol,
            timeoutMs: o.timeoutMs,
            family: o.family ?? defaultFamily(st),
          };
          if (st.settings.kubelet === "real") {
            const pods = [...(await realPods(st)).values()];
            return withProbeServers(st, pods, () => probeMatrix(st, spec, pods));
          }
          return probeMatrix(st, spec);
        });
        process.stdout.write(o.output === "json" ? JSON.stringify(matrixJson(m)) + "\n" : matrixTable(m));
      },
    );

  lab
    .command("exec <target> <cmd...>")
    .description(
      "run CMD inside a pod's (NS/POD) or a node's (nX) network namespace: weft lab exec default/web -- ip addr",
    )
    .allowUnknownOption()
    .action(async (target: string, cmd: string[]) => {
      const netnsPath = await guard(async () => {
        const names = LabNames.fromEnv();
        const st = requireLab(names);
        if (target.includes("/"))
          return st.settings.kubelet === "real"
            ? (await findRealPod(st, target)).netnsPath
            : netnsPathOf(findPod(st, target).netns);
        const node = st.nodes.find((n) => n.name === target);
        if (!node)
          throw new LabError(
            `"${target}" is neither a node (${st.nodes.map((n) => n.name).join(", ")}) nor NAMESPACE/POD`,
          );
        return netnsPathOf(node.netns);
      });
      const child = spawn("nsenter", [`--net=${netnsPath}`, "--", ...cmd], {
        stdio: "inherit",
        env: childEnv(),
      });
      const code = await new Promise<number>((resolve) => {
        child.on("error", (e) => {
          process.stderr.write(`weft: lab exec: ${e.message}\n`);
          resolve(127);
        });
        child.on("exit", (c, sig) => resolve(c ?? 128 + (sig ? constants.signals[sig] : 0)));
      });
      process.exitCode = code;
    });
}
