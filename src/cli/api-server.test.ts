// --api-server (agent.json apiServer): the API server's address for an agent in a pod, in place of
// $KUBERNETES_SERVICE_HOST/PORT; a clear error for anything else.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { agentConfigFromFlags, mergeConfigFile, parseApiServer, registerAgent } from "./agent.js";
import { UserError } from "./errors.js";

test("parseApiServer: HOST:PORT, [IPv6]:PORT, https://HOST:PORT", () => {
  assert.deepEqual(parseApiServer("127.0.0.1:6443"), { host: "127.0.0.1", port: 6443 });
  assert.deepEqual(parseApiServer("https://api.example.internal:443/"), { host: "api.example.internal", port: 443 });
  assert.deepEqual(parseApiServer("[fd00::1]:6443"), { host: "fd00::1", port: 6443 });
  assert.deepEqual(parseApiServer("https://[fd00::1]:6443"), { host: "fd00::1", port: 6443 });
  for (const [bad, why] of [
    ["127.0.0.1", /not a host and port/],
    ["http://127.0.0.1:8080", /only https/],
    ["127.0.0.1:0", /port 0 is not 1-65535/],
    ["127.0.0.1:70000", /port 70000/],
    ["fd00::1:6443", /not a host and port/],
    ["[nope]:6443", /not a host and port|not an IP address/],
    ["bad_name:6443", /not an IP address or a DNS name/],
  ] as const)
    assert.throws(
      () => parseApiServer(bad),
      (e: unknown) => e instanceof UserError && why.test(e.message) && e.message.includes("HOST:PORT"),
      bad,
    );
});

const flags = { node: "n1", store: "kubernetes", socket: "/run/weft/weft.sock" };

test("--api-server goes with a pod's ServiceAccount, not with a kubeconfig", () => {
  assert.throws(
    () => agentConfigFromFlags({ ...flags, apiServer: "127.0.0.1:6443", kubeconfig: "/k" }, {}),
    /--kubeconfig names its own server: give one or the other/,
  );
  assert.throws(
    () => agentConfigFromFlags({ ...flags, apiServer: "127.0.0.1:6443" }, { KUBECONFIG: "/k" }),
    /\$KUBECONFIG names its own server/,
  );
  // Outside a pod (no ServiceAccount token on this machine) it would be silently unused: refused.
  assert.throws(
    () => agentConfigFromFlags({ ...flags, apiServer: "127.0.0.1:6443" }, { HOME: "/nonexistent" }),
    /--api-server is for an agent in a pod: no ServiceAccount token/,
  );
});

test("agent.json apiServer is the flag's key; the command line wins over the file", () => {
  const dir = mkdtempSync(join(tmpdir(), "wt-apisrv-"));
  try {
    const file = join(dir, "agent.json");
    writeFileSync(file, JSON.stringify({ apiServer: "10.0.0.1:6443", logLevel: "info" }));
    const parse = (argv: string[]) => {
      const program = new Command().exitOverride();
      let got: Record<string, unknown> = {};
      registerAgent(program);
      const cmd = program.commands.find((c) => c.name() === "agent")!;
      cmd.action((o: Parameters<typeof mergeConfigFile>[1], c: Command) => {
        got = mergeConfigFile(c, o) as unknown as Record<string, unknown>;
      });
      program.parse(["node", "weft", "agent", "--node", "n1", "--config", file, ...argv]);
      return got;
    };
    assert.equal(parse([]).apiServer, "10.0.0.1:6443");
    assert.equal(parse(["--api-server", "127.0.0.1:6443"]).apiServer, "127.0.0.1:6443");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
