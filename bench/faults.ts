// Reliability figures (not speed): runs the two fault tests, src/e2e/cni/faults-kill.test.ts (agent
// kill -9 at seeded moments during pod churn) and src/e2e/cni/fuzz.test.ts (seeded malformed input to
// the agent socket and the plugin), and writes what they measured into docs/benchmarks.md. The
// tests assert the outcome (no duplicate, no leak, no crash); this only reports their figures.
//   node dist-bench/bench/faults.js          (after `npm run build`; bench/run.sh does both)
//   WEFT_FAULTS_SEED / WEFT_FUZZ_SEED / WEFT_FUZZ_CASES / WEFT_FAULTS_KILLS change the run.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { machine, repoRoot, today, writeSection } from "./lib.js";

interface Kill {
  seed: number;
  pods: number;
  kills: number;
  inFlightAtKill: number[];
  restartMs: number[];
  addsOk: number;
  addAttempts: number;
  delsOk: number;
  delAttempts: number;
  failureCodes: Record<string, number>;
  ms: number;
}

interface Fuzz {
  seed: number;
  cases: number;
  line: number;
  frame: number;
  viaSocket: number;
  viaExec: number;
  rejected: number;
  accepted: number;
  acceptedAdds: number;
  codes: Record<string, number>;
  ms: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};
const codes = (c: Record<string, number>): string =>
  Object.entries(c)
    .sort((a, b) => Number(a[0]) - Number(b[0]))
    .map(([k, n]) => `${k}: ${n}`)
    .join(", ");

const out = mkdtempSync(join(tmpdir(), "weft-faults-"));
try {
  const tests = ["dist/e2e/cni/faults-kill.test.js", "dist/e2e/cni/fuzz.test.js"];
  const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...tests], {
    cwd: repoRoot,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, WEFT_FAULTS_OUT: out },
  });
  if (r.status !== 0) throw new Error(`the fault tests failed (exit ${r.status}); no figures written`);
  const k = JSON.parse(readFileSync(join(out, "kill.json"), "utf8")) as Kill;
  const f = JSON.parse(readFileSync(join(out, "fuzz.json"), "utf8")) as Fuzz;
  const body = `## Faults (bench/faults.ts)

${today()} on ${machine()}. Figures from the two fault tests, which assert the outcomes; rerun
with \`bash bench/run.sh faults\` (or the tests alone: \`bash scripts/test.sh dist/e2e/cni/faults-kill.test.js
dist/e2e/cni/fuzz.test.js\`, which print the same figures as \`# faults-kill:\` / \`# fuzz:\` diagnostics).

**Agent kill -9 during churn** (src/e2e/cni/faults-kill.test.ts, seed ${k.seed}). ${k.pods} pods, each a
worker that ADDs and DELs through the installed plugin (env + stdin, as a runtime does), a new
sandbox ID per cycle; a failed ADD is torn down with DEL and retried (exponential backoff, 0.1-2 s, with jitter).
Meanwhile the agent (\`weft agent --store local\` in a test namespace) is killed by PID with SIGKILL
at seeded random moments with calls in flight, and restarted on the same state. Then: every pod
carries exactly one address, no two alike (\`ip -j addr\` in each pod); one more kill -9 and
restart; DEL of everything; \`weft ipam check\` clean, IPAM store empty, no weft veth in the node
namespace, no nft element of a deleted pod.

| measure | value |
|---|---|
| kill -9 points | ${k.kills} |
| calls in flight at a kill (median / max) | ${median(k.inFlightAtKill)} / ${Math.max(...k.inFlightAtKill)} |
| agent restart to ready (median / max) | ${median(k.restartMs)} ms / ${Math.max(...k.restartMs)} ms |
| ADDs succeeded / attempted | ${k.addsOk} / ${k.addAttempts} |
| DELs succeeded / attempted | ${k.delsOk} / ${k.delAttempts} |
| retries (failed attempts) by CNI code | ${codes(k.failureCodes) || "none"} |
| addresses given twice / leaked / orphan links / leftover nft elements | 0 / 0 / 0 / 0 |
| run time | ${(k.ms / 1000).toFixed(1)} s |

**Malformed input** (src/e2e/cni/fuzz.test.ts, generator src/testlib/fuzz.ts, seed ${f.seed}). Mutated
JSON-line requests, broken WEFTCNI1 frames and mutated runtime calls (truncation, bit flips, wrong
types, huge numbers, deep nesting, invalid UTF-8, missing and extra CNI_* variables, oversized
fields, path traversal). Most go to the agent's socket from the test process; every runtime call
whose index is a multiple of 10 is exec'd through the installed plugin binary instead. The agent
never crashed (the same PID answered STATUS after), every answer was a well-formed error with a
sensible code (or a success, for a mutation that was still a valid call; an ADD so accepted was
DELeted), and nothing was left behind. Code 102 (kernel failure) is accepted only as "interface eth0
already exists": the cases share one pod namespace, so a concurrent accepted ADD may hold its eth0.
Found and fixed by it: an empty request held its connection open without an answer; a deeply
nested config value gave internal error 999 instead of a config error; CNI_IFNAME with '%'
reached the kernel, which takes "eth%d" as a name template.

| measure | value |
|---|---|
| cases | ${f.cases} |
| to the socket: JSON lines / frames / runtime calls as frames | ${f.line} / ${f.frame} / ${f.viaSocket - f.line - f.frame} |
| exec'd through the plugin binary | ${f.viaExec} |
| rejected / still valid (accepted) | ${f.rejected} / ${f.accepted} (of them ADDs: ${f.acceptedAdds}) |
| rejections by code | ${codes(f.codes)} |
| agent crashes / malformed answers / leftovers | 0 / 0 / 0 |
| run time | ${(f.ms / 1000).toFixed(1)} s |
`;
  writeSection(join(repoRoot, "docs", "benchmarks.md"), "faults", body);
  process.stderr.write("faults: docs/benchmarks.md updated\n");
} finally {
  rmSync(out, { recursive: true, force: true });
}
