// The entrypoint of localhost/weft/lab-pod:1: the lab's pod server with its ports as plain
// arguments, as a pod spec's `args` gives them ("80/TCP", "53/UDP", "9/SCTP"): TCP accepts,
// UDP echoes, on every address of the pod. `--control PATH` moves its probe socket.
//   node dist/image/lab-pod.js [--control /tmp/pod-server.sock] 80/TCP 53/UDP
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { serve, type ServedPort } from "../lab/pod-server.js";

export const DEFAULT_CONTROL = "/tmp/pod-server.sock";

/** "80/TCP" -> {port: 80, protocol: "TCP"}; a clear error for anything else. */
export function parsePort(arg: string): ServedPort {
  const m = /^(\d{1,5})\/(TCP|UDP|SCTP)$/i.exec(arg);
  const port = m ? Number(m[1]) : NaN;
  if (!m || port < 1 || port > 65535)
    throw new Error(`"${arg}" is not a port: give PORT/PROTOCOL with PORT in 1..65535 and TCP, UDP or SCTP`);
  return { port, protocol: m[2].toUpperCase() as ServedPort["protocol"] };
}

export function parseLabPodArgs(argv: string[]): { control: string; ports: ServedPort[] } {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { control: { type: "string", default: DEFAULT_CONTROL } },
    allowPositionals: true,
  });
  const ports = positionals.map(parsePort);
  const seen = new Set<string>();
  for (const p of ports) {
    const k = `${p.port}/${p.protocol}`;
    if (seen.has(k)) throw new Error(`port ${k} is given twice`);
    seen.add(k);
  }
  return { control: values.control ?? DEFAULT_CONTROL, ports };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let args: { control: string; ports: ServedPort[] };
  try {
    args = parseLabPodArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`lab-pod: ${(e as Error).message}\n`);
    process.exit(2);
  }
  serve(args.control, args.ports).catch((e: unknown) => {
    process.stderr.write(`lab-pod: cannot start: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
