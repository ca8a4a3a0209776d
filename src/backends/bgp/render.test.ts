// bird.conf is a pure function of its input: golden files pin the bytes (WEFT_UPDATE_GOLDEN=1
// rewrites them after an intended change), and BIRD itself (`bird -p`) must accept each one.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { checkBirdConfig } from "../../kernel/bird.js";
import { cidrOrThrow } from "../../net/cidr.js";
import type { IpFamily as Family } from "../../net/ip.js";
import { BackendSetupError } from "../types.js";
import { bgpSettings } from "./backend.js";
import { isPassive, renderBirdConfig, routerId, type RenderNode, type RenderSession } from "./render.js";

// dist/backends/bgp -> src/backends/bgp/testdata
const GOLDEN = fileURLToPath(new URL("../../../src/backends/bgp/testdata/", import.meta.url));

function node(
  name: string,
  underlay: Partial<Record<Family, string>>,
  pods: Partial<Record<Family, string>>,
): RenderNode {
  return {
    name,
    underlay: new Map(Object.entries(underlay).map(([f, a]) => [Number(f) as Family, a as string])),
    pods: new Map(Object.entries(pods).map(([f, c]) => [Number(f) as Family, cidrOrThrow(c as string)])),
  };
}

const n1 = node("n1", { 4: "10.200.0.2", 6: "fd00:200::2" }, { 4: "10.244.1.0/24", 6: "fd00:244:1::/64" });
const n2 = node("n2", { 4: "10.200.0.3", 6: "fd00:200::3" }, { 4: "10.244.2.0/24", 6: "fd00:244:2::/64" });
const n3 = node("n3", { 4: "10.200.0.1", 6: "fd00:200::1" }, { 4: "10.244.3.0/24", 6: "fd00:244:3::/64" });
const v4 = (n: RenderNode): RenderNode => ({
  ...n,
  underlay: new Map([...n.underlay].filter(([f]) => f === 4)),
  pods: new Map([...n.pods].filter(([f]) => f === 4)),
});

const CASES: Record<string, Parameters<typeof renderBirdConfig>[0]> = {
  "ipv4-mesh": {
    local: v4(n1),
    peers: [v4(n2), v4(n3)],
    settings: bgpSettings(),
    logFile: "/var/lib/weft/bird/bird.log",
  },
  "dual-stack-mesh": { local: n1, peers: [n3, n2], settings: bgpSettings(), logFile: "/var/lib/weft/bird/bird.log" },
  "alone-as65001": {
    local: v4(n1),
    peers: [],
    settings: bgpSettings({ asNumber: 65001, restartSeconds: 60 }),
    logFile: "/var/lib/weft/bird/bird.log",
  },
  "ipv6-only": {
    local: node("v6a", { 6: "fd00:200::2" }, { 6: "fd00:244:1::/64" }),
    peers: [node("v6b", { 6: "fd00:200::3" }, { 6: "fd00:244:2::/64" })],
    settings: bgpSettings(),
    logFile: "/var/lib/weft/bird/bird.log",
  },
  // Mesh off, AS per rack: eBGP to the ToR with a password and BFD, an iBGP router without GR,
  // extra prefixes, this node's own AS and router id.
  "tor-ebgp": {
    local: { ...v4(n1), asNumber: 65010, routerId: "10.0.0.1" },
    peers: [],
    settings: bgpSettings({ restartSeconds: 90 }),
    logFile: "/var/lib/weft/bird/bird.log",
    announce: { podCIDRs: true, prefixes: [cidrOrThrow("192.0.2.0/24"), cidrOrThrow("2001:db8:5::/48")] },
    bfd: { intervalMs: 300, multiplier: 5 },
    sessions: [
      session({
        name: "peer_10_200_0_254",
        why: "BGPPeer tor-r1",
        neighbor: "10.200.0.254",
        neighborAs: 65001,
        password: "s3cret",
        bfd: true,
      }),
      session({
        name: "peer_10_200_0_253",
        why: "BGPPeer core",
        neighbor: "10.200.0.253",
        neighborAs: 65010,
        gracefulRestart: false,
      }),
    ],
  },
  // A route reflector (mesh off): its peerSelector peers are rr clients, with its cluster id.
  "route-reflector": {
    local: v4(n1),
    peers: [],
    settings: bgpSettings(),
    logFile: "/var/lib/weft/bird/bird.log",
    rrClusterId: "10.255.0.1",
    sessions: [
      session({
        name: "node_10_200_0_3",
        why: "node n2 (BGPPeer rr)",
        neighbor: "10.200.0.3",
        neighborAs: 64512,
        rrClient: true,
      }),
      session({
        name: "node_10_200_0_1",
        why: "node n3 (BGPPeer rr)",
        neighbor: "10.200.0.1",
        neighborAs: 64512,
        rrClient: true,
        passive: true,
      }),
    ],
  },
  // An rr client: one session to the reflector, nothing announced but its pod subnet.
  "rr-client": {
    local: v4(n2),
    peers: [],
    settings: bgpSettings(),
    logFile: "/var/lib/weft/bird/bird.log",
    sessions: [
      session({
        name: "node_10_200_0_2",
        why: "node n1 (BGPPeer rr)",
        localAddress: "10.200.0.3",
        neighbor: "10.200.0.2",
        neighborAs: 64512,
        passive: true,
      }),
    ],
  },
};

function session(
  o: Partial<RenderSession> & Pick<RenderSession, "name" | "why" | "neighbor" | "neighborAs">,
): RenderSession {
  return {
    family: 4,
    localAddress: "10.200.0.2",
    multihop: false,
    passive: false,
    bfd: false,
    gracefulRestart: true,
    rrClient: false,
    ...o,
  };
}

for (const [name, input] of Object.entries(CASES)) {
  test(`bird.conf golden: ${name} (and BIRD accepts it)`, async () => {
    const text = renderBirdConfig(input);
    const file = join(GOLDEN, `${name}.conf`);
    if (process.env.WEFT_UPDATE_GOLDEN === "1" || !existsSync(file)) writeFileSync(file, text);
    assert.equal(text, readFileSync(file, "utf8"), `${file} differs (WEFT_UPDATE_GOLDEN=1 rewrites it)`);
    const dir = mkdtempSync(join(tmpdir(), "weft-bird-"));
    try {
      writeFileSync(join(dir, "bird.conf"), text);
      await checkBirdConfig(join(dir, "bird.conf"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("the same input in another order renders the same bytes", () => {
  const a = renderBirdConfig(CASES["dual-stack-mesh"]);
  const b = renderBirdConfig({ ...CASES["dual-stack-mesh"], peers: [n2, n3] });
  assert.equal(a, b);
});

test("what is exported: only this node's pod subnets, from its static route; what the kernel gets: only BGP routes", () => {
  const text = renderBirdConfig(CASES["ipv4-mesh"]);
  assert.match(text, /filter weft_export4 \{\n {2}if proto = "weft_pods4" then accept;\n {2}reject;\n\}/);
  assert.match(text, /export filter weft_export4;/);
  assert.match(text, /import where net ~ \[ 10\.244\.2\.0\/24 \];/);
  assert.match(text, /filter weft_to_kernel4 \{\n {2}if source = RTS_BGP then accept;\n {2}reject;\n\}/);
  assert.match(text, /filter weft_import4 \{\n {2}if net ~ \[ 10\.244\.1\.0\/24\+ \] then reject;/);
  assert.doesNotMatch(text, /protocol direct/);
  assert.match(text, /persist;/);
  assert.match(text, /learn off;/);
});

test("BGPPeer sessions: password, BFD with the configured timers, GR per peer, rr client with cluster id, own AS", () => {
  const tor = renderBirdConfig(CASES["tor-ebgp"]);
  assert.match(tor, /router id 10\.0\.0\.1;/);
  assert.match(tor, /protocol bfd weft_bfd \{\n {2}interface "\*" \{\n {4}interval 300 ms;\n {4}multiplier 5;/);
  assert.match(
    tor,
    /protocol bgp peer_10_200_0_254 \{\n {2}local 10\.200\.0\.2 as 65010;\n {2}neighbor 10\.200\.0\.254 as 65001;\n {2}direct;\n {2}password "s3cret";\n {2}bfd on;\n {2}graceful restart on;\n {2}graceful restart time 90;/,
  );
  assert.match(tor, /protocol bgp peer_10_200_0_253 \{[^}]*graceful restart off;/);
  assert.doesNotMatch(tor.split("protocol bgp peer_10_200_0_253")[1].split("\n}\n")[0], /bfd on/);
  assert.match(tor, /route 192\.0\.2\.0\/24 blackhole;/);
  assert.match(tor, /filter weft_export6 \{\n {2}if proto = "weft_extra6" then accept;\n {2}reject;/);
  assert.doesNotMatch(renderBirdConfig(CASES["ipv4-mesh"]), /protocol bfd|password|rr client;/);
  const rr = renderBirdConfig(CASES["route-reflector"]);
  assert.match(rr, /rr client;\n {2}rr cluster id 10\.255\.0\.1;/);
  assert.match(rr, /export filter weft_reflect4;\n {4}next hop self ebgp;/);
  assert.match(rr, /if source = RTS_BGP && \(proto ~ "mesh_\*" \|\| proto ~ "node_\*"\) then accept;/);
  assert.doesNotMatch(renderBirdConfig(CASES["rr-client"]), /rr client;|filter weft_reflect4;/);
  assert.throws(
    () =>
      renderBirdConfig({
        ...CASES["rr-client"],
        sessions: [session({ name: "peer_x", why: "x", neighbor: "10.0.0.9", neighborAs: 1, password: 'a"b' })],
      }),
    /unusable password/,
  );
});

test("sessions are unidirectional: the higher address listens", () => {
  assert.equal(isPassive("10.200.0.3", "10.200.0.2"), true);
  assert.equal(isPassive("10.200.0.2", "10.200.0.3"), false);
  assert.equal(isPassive("10.200.0.10", "10.200.0.9"), true, "numeric, not text order");
  const text = renderBirdConfig(CASES["ipv4-mesh"]);
  // n1 (.2) listens to n3 (.1) and connects to n2 (.3).
  assert.match(text, /neighbor 10\.200\.0\.1 as 64512;\n {2}passive on;/);
  assert.doesNotMatch(text, /neighbor 10\.200\.0\.3 as 64512;\n {2}passive on;/);
});

test("router id: the IPv4 underlay address, else a stable hash of the name", () => {
  assert.equal(routerId(n1), "10.200.0.2");
  const v6 = node("v6a", { 6: "fd00::2" }, { 6: "fd00:244:1::/64" });
  assert.equal(routerId(v6), routerId(v6));
  assert.notEqual(routerId(v6), routerId({ ...v6, name: "v6b" }));
  assert.match(routerId(v6), /^\d+\.\d+\.\d+\.\d+$/);
});

test("bad settings are refused with the field named, before anything is rendered", () => {
  for (const [o, field] of [
    [{ asNumber: 0 }, /bgp\.asNumber: 0 is not an AS number/],
    [{ asNumber: 4294967296 }, /bgp\.asNumber/],
    [{ asNumber: 1.5 }, /bgp\.asNumber/],
    [{ asNumber: "64512" as unknown as number }, /bgp\.asNumber: "64512"/],
    [{ restartSeconds: 0 }, /bgp\.restartSeconds/],
    [{ restartSeconds: 5000 }, /bgp\.restartSeconds/],
  ] as const) {
    assert.throws(
      () => bgpSettings(o),
      (e: unknown) => e instanceof BackendSetupError && field.test(e.message),
    );
  }
  assert.throws(
    () => renderBirdConfig({ ...CASES["ipv4-mesh"], settings: { asNumber: -1, restartSeconds: 120 } }),
    /bgp\.asNumber/,
  );
});
