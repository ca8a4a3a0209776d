// The rack lab's plan and its routers' FRR configs: nodes split into contiguous racks, the ToR
// configs per mode (what they peer with, what they send the nodes), and FRR's own parser (bgpd
// and bfdd in dry-run mode, no daemon started) accepting every line of them.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { runStatus } from "../kernel/exec.js";
import { validateSettings } from "./lab.js";
import { externalConfig, rackOf, torAs, torConfig, type RackRouter } from "./tor.js";

const TOR: RackRouter = {
  rack: 1,
  netns: "x-tor1",
  as: 65001,
  ipv4: "10.250.1.1",
  ipv6: "fd00:250:1::1",
  fabric4: "10.249.0.11",
  fabric6: "fd00:249::11",
  frrDir: "/run/x-frr/tor1",
};
const CIDRS = ["10.244.0.0/16", "fd00:244::/48"];

test("nodes split into contiguous racks, as even as they come", () => {
  assert.deepEqual(
    [1, 2, 3, 4].map((i) => rackOf(i, 4, 2)),
    [1, 1, 2, 2],
  );
  assert.deepEqual(
    [1, 2, 3].map((i) => rackOf(i, 3, 2)),
    [1, 1, 2],
  );
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((i) => rackOf(i, 6, 3)),
    [1, 1, 2, 2, 3, 3],
  );
  assert.equal(torAs(2, "ebgp"), 65002);
  assert.equal(torAs(2, "rr"), 64512);
});

test("ebgp ToR: dynamic eBGP sessions from its rack with BFD, sends the nodes nothing; rr ToR reflects pod routes only", () => {
  const e = torConfig(TOR, "ebgp", CIDRS).bgpd!;
  assert.match(e, /^router bgp 65001$/m);
  assert.match(e, /^ neighbor NODES4 remote-as external$/m);
  assert.match(e, /^ bgp listen range 10\.250\.1\.0\/24 peer-group NODES4$/m);
  assert.match(e, /^ bgp listen range fd00:250:1::\/64 peer-group NODES6$/m);
  assert.match(e, /^ neighbor NODES4 bfd profile weft$/m);
  assert.match(e, /^ bgp graceful-restart$/m);
  assert.match(e, /^ {2}neighbor NODES4 prefix-list NONE4 out$/m);
  assert.doesNotMatch(e, /route-reflector-client/);
  const r = torConfig({ ...TOR, as: 64512 }, "rr", CIDRS).bgpd!;
  assert.match(r, /^ neighbor NODES4 remote-as internal$/m);
  assert.match(r, /^ {2}neighbor NODES4 route-reflector-client$/m);
  assert.match(r, /^ {2}neighbor NODES4 prefix-list PODS4 out$/m);
  assert.match(r, /^ip prefix-list PODS4 seq 10 permit 10\.244\.0\.0\/16 le 32$/m);
  const x = externalConfig({ netns: "e", as: 65000, ipv4: "10.249.0.1", frrDir: "/x" }, [TOR], "rr").bgpd!;
  assert.match(x, /^ {2}neighbor 10\.249\.0\.11 as-override$/m, "rr: the cluster AS replaced between racks");
  assert.match(
    torConfig(TOR, "ebgp", CIDRS).bfdd!,
    /receive-interval 100\n {2}transmit-interval 100\n {2}detect-multiplier 3/,
  );
  assert.deepEqual(torConfig(TOR, "ebgp", CIDRS), torConfig(TOR, "ebgp", CIDRS), "a pure function");
});

const noFrr = existsSync("/usr/lib/frr/bgpd") ? undefined : "FRR is not installed (Debian frr)";

test("FRR's parser accepts every line of the ToR (both modes) and external configs", { skip: noFrr }, async () => {
  const dir = mkdtempSync("/tmp/weft-torcfg-");
  chmodSync(dir, 0o755);
  try {
    const configs: [string, string, string][] = [
      ["bgpd", "ebgp", torConfig(TOR, "ebgp", CIDRS).bgpd!],
      ["bgpd", "rr", torConfig({ ...TOR, as: 64512 }, "rr", CIDRS).bgpd!],
      [
        "bgpd",
        "external",
        externalConfig({ netns: "e", as: 65000, ipv4: "10.249.0.1", ipv6: "fd00:249::1", frrDir: "/x" }, [TOR], "rr")
          .bgpd!,
      ],
      ["bfdd", "bfd", torConfig(TOR, "ebgp", CIDRS).bfdd!],
    ];
    for (const [daemon, name, text] of configs) {
      const file = join(dir, `${name}.conf`);
      writeFileSync(file, text, { mode: 0o644 });
      const extra = daemon === "bgpd" ? ["-p", "0", "-n", "-Z"] : ["--bfdctl", join(dir, "bfdd.sock")];
      const r = await runStatus([
        `/usr/lib/frr/${daemon}`,
        "-C",
        "-f",
        file,
        "-u",
        "frr",
        "-g",
        "frr",
        "-z",
        join(dir, "zserv.api"),
        "--vty_socket",
        dir,
        ...extra,
      ]);
      // FRR's dry run exits 0 either way; a refused line is logged "... on config line N".
      assert.doesNotMatch(r.stdout + r.stderr, /config line|Unknown command|% /, `${name}: ${r.stdout}${r.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bad rack settings are refused before anything is made, naming the flag", () => {
  const base = { nodes: 4, backend: "bgp" as const, dualStack: false, etcdMembers: 1 as const, store: "etcd" as const };
  assert.doesNotThrow(() => validateSettings({ ...base, racks: 2, torMode: "rr" }));
  assert.throws(() => validateSettings({ ...base, racks: 5 }), /--racks 5: more racks than --nodes 4/);
  assert.throws(() => validateSettings({ ...base, racks: 10 }), /--racks 10: must be 1 to 9/);
  assert.throws(() => validateSettings({ ...base, backend: "vxlan", racks: 2 }), /--racks 2: .* needs --backend bgp/);
  assert.throws(() => validateSettings({ ...base, torMode: "rr" }), /--tor-mode rr: only with --racks/);
});
