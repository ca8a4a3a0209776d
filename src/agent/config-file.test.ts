// `weft agent --config FILE`: the file's settings under the flags, checked as a user meets them:
// a misspelt key or a wrong type is one clear error naming it, and a real agent started with a
// file takes the file's settings except where a flag says otherwise.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runStatus } from "../kernel/exec.js";
import { startTestAgent } from "../testlib/agent.js";
import { createNetns, removeAllNetns } from "../testlib/netns.js";
import { ConfigFileError, parseAgentConfig, type ConfigKey } from "./config-file.js";

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");
const dir = mkdtempSync(join(tmpdir(), "weft-config-"));
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await removeAllNetns();
});

const KEYS: ConfigKey[] = [
  { key: "node", flag: "--node", boolean: false },
  { key: "mtu", flag: "--mtu", boolean: false },
  { key: "realNode", flag: "--real-node", boolean: true },
];

test("parse: values become flag strings, switches booleans; empty file = nothing set", () => {
  assert.deepEqual(parseAgentConfig("node: n1\nmtu: 1400\nrealNode: true\n", "f", KEYS), {
    node: "n1",
    mtu: "1400",
    realNode: true,
  });
  assert.deepEqual(parseAgentConfig("", "f", KEYS), {});
  assert.deepEqual(parseAgentConfig("# only a comment\n", "f", KEYS), {});
});

test("parse: unknown keys, wrong types, non-mappings and bad YAML are errors that name the problem", () => {
  const bad: [string, RegExp][] = [
    ["node: n1\nnodes: n2\nmtuu: 1\n", /f: unknown settings "nodes", "mtuu"; known: node, mtu, realNode/],
    ["mtu: [1400]\n", /"mtu" \(--mtu\) must be a string or a number/],
    ["realNode: yes please\n", /"realNode" \(--real-node\) must be true or false/],
    ["- node\n", /expected a mapping/],
    ["node: [\n", /not valid YAML/],
  ];
  for (const [text, re] of bad)
    assert.throws(
      () => parseAgentConfig(text, "f", KEYS),
      (e: unknown) => {
        assert.ok(e instanceof ConfigFileError);
        assert.match(e.message, re);
        return true;
      },
    );
});

test("weft agent --config: an unknown key or a missing file is exit 2 with one line naming it", async () => {
  const file = join(dir, "bad.yaml");
  writeFileSync(file, "node: n1\nhealthport: 9000\n");
  const r = await runStatus([process.execPath, CLI, "agent", "--config", file]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /unknown setting "healthport"; known: .*healthPort/);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  const missing = await runStatus([process.execPath, CLI, "agent", "--config", join(dir, "nope.yaml")]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--config .*nope\.yaml: ENOENT/);
  writeFileSync(file, "store: local\nlogLevel: loud\nnode: n1\nstateDir: /nonexistent/x\npodCidr: 10.0.0.0/24\n");
  const level = await runStatus([process.execPath, CLI, "agent", "--config", file]);
  assert.equal(level.code, 2);
  assert.match(level.stderr, /--log-level loud: use trace, debug, info, warn, error/);
});

test("a real agent takes the file's settings; flags given on the command line win", async () => {
  const host = await createNetns("cfg");
  const file = join(dir, "agent.yaml");
  writeFileSync(
    file,
    ["node: from-file", "mtu: 1400", "healthPort: 0", "logLevel: debug", "denyLog: false", ""].join("\n"),
  );
  const agent = await startTestAgent({
    netns: host.path,
    podCidr: "10.77.0.0/24",
    node: "from-flag",
    mtu: 1300,
    extraArgs: ["--config", file],
  });
  try {
    const lines = agent
      .logs()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const ready = lines.find((l) => l.msg === "agent ready")!;
    assert.equal(ready.node, "from-flag", "--node on the command line wins");
    assert.equal(ready.mtu, 1300, "--mtu on the command line wins");
    assert.ok(
      lines.some((l) => l.level === 20),
      "logLevel: debug from the file",
    );
    const health = lines.find((l) => l.msg === "health endpoints on /healthz and /readyz");
    assert.ok(health, "healthPort from the file");
    const r = await host.status([
      "curl",
      "-s",
      "-m",
      "3",
      "-w",
      " %{http_code}",
      `http://127.0.0.1:${health.port}/readyz`,
    ]);
    assert.match(r.stdout, /^ok\n 200$/, r.stderr);
  } finally {
    await agent.cleanup();
    await host.remove();
  }
});

test("--log-level: WEFT_LOG_LEVEL wins over the file, the flag over WEFT_LOG_LEVEL", async () => {
  const host = await createNetns("lvl");
  const file = join(dir, "level.yaml");
  writeFileSync(file, "logLevel: info\n");
  const debugLines = (logs: string) =>
    logs
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .filter((l) => (JSON.parse(l) as { level: number }).level === 20).length;
  const saved = process.env.WEFT_LOG_LEVEL;
  process.env.WEFT_LOG_LEVEL = "debug";
  try {
    const a = await startTestAgent({ netns: host.path, podCidr: "10.78.0.0/24", extraArgs: ["--config", file] });
    const fromEnv = debugLines(a.logs());
    await a.cleanup();
    const b = await startTestAgent({
      netns: host.path,
      podCidr: "10.78.0.0/24",
      extraArgs: ["--config", file, "--log-level", "info"],
    });
    const fromFlag = debugLines(b.logs());
    await b.cleanup();
    assert.ok(fromEnv > 0, "debug lines with WEFT_LOG_LEVEL=debug");
    assert.equal(fromFlag, 0, "no debug lines with --log-level info");
  } finally {
    if (saved === undefined) delete process.env.WEFT_LOG_LEVEL;
    else process.env.WEFT_LOG_LEVEL = saved;
    await host.remove();
  }
});
