// kernel/charon.ts without a namespace: swanctl.conf and strongswan.conf are pure functions of their
// input (golden files pin the bytes; WEFT_UPDATE_GOLDEN=1 rewrites them), bad input is refused with
// a message that never carries the key, swanctl's --raw output is parsed, and a PID file naming some
// other process is not taken for charon.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  charonPaths,
  CHARON_PLUGINS,
  findCharon,
  IpsecConfigError,
  parseSas,
  renderStrongswanConf,
  renderSwanctlConf,
  stopCharon,
  type SwanctlInput,
} from "./charon.js";
import { InvalidKernelInput } from "./validate.js";

// dist/kernel -> src/kernel/testdata
const GOLDEN = fileURLToPath(new URL("../../src/kernel/testdata/", import.meta.url));

function golden(name: string, text: string): void {
  const file = join(GOLDEN, name);
  if (process.env.WEFT_UPDATE_GOLDEN === "1" || !existsSync(file)) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, text);
  }
  assert.equal(text, readFileSync(file, "utf8"), `${file} differs (WEFT_UPDATE_GOLDEN=1 rewrites it)`);
}

const PSK = { id: 1, hex: "0123456789abcdef".repeat(4) };
const base: SwanctlInput = {
  local: { name: "n1", address: "10.250.0.11", podCidrs: ["10.244.1.0/24"] },
  peers: [
    { name: "n3", address: "10.250.0.13", podCidrs: ["10.244.3.0/24"] },
    { name: "n2", address: "10.250.0.12", podCidrs: ["10.244.2.0/24"] },
  ],
  psks: [PSK],
};

test("swanctl.conf: one IKEv2 connection and CHILD_SA per peer, trap|start, DPD restart, forced UDP encap", () => {
  const text = renderSwanctlConf(base);
  golden("swanctl-ipv4.conf", text);
  assert.match(text, /start_action = trap\|start/);
  assert.match(text, /dpd_action = restart/);
  assert.match(text, /encap = yes/);
  assert.equal(text.match(/^ {2}weft-n\d \{/gm)?.length, 2, "one connection per peer");
  // Peers in name order whatever the input order: the file is stable, so an unchanged cluster reloads nothing.
  assert.equal(text, renderSwanctlConf({ ...base, peers: [...base.peers].reverse() }));
});

test("swanctl.conf: nodeToNode adds the node addresses; rekey time and a second PSK generation (rotation)", () => {
  const text = renderSwanctlConf({
    ...base,
    nodeToNode: true,
    rekeySeconds: 30,
    psks: [PSK, { id: 2, hex: "fedcba9876543210".repeat(4) }],
  });
  golden("swanctl-node-to-node-rekey30-rotation.conf", text);
  assert.match(text, /local_ts = 10\.244\.1\.0\/24,10\.250\.0\.11\/32/);
  assert.match(text, /remote_ts = 10\.244\.2\.0\/24,10\.250\.0\.12\/32/);
  assert.match(text, /rekey_time = 30s/);
  assert.match(text, /ike-weft-2 \{[^}]*\}\s*ike-weft-1 \{/s, "the newest generation first: charon prefers it");
});

test("swanctl.conf: IPv6 and dual-stack peers", () => {
  golden(
    "swanctl-dual-stack.conf",
    renderSwanctlConf({
      local: { name: "n1", address: "fd00::11", podCidrs: ["10.244.1.0/24", "fd10:244:1::/64"] },
      peers: [{ name: "n2", address: "fd00::12", podCidrs: ["10.244.2.0/24", "fd10:244:2::/64"] }],
      psks: [PSK],
    }),
  );
});

test("bad input: a PSK too short, not hex, none at all; bad names, addresses, rekey times; the key never in a message", () => {
  const short = { id: 1, hex: "ab".repeat(16) };
  assert.throws(
    () => renderSwanctlConf({ ...base, psks: [short] }),
    (e: Error) =>
      e instanceof IpsecConfigError &&
      /too short: 16 bytes, need at least 32/.test(e.message) &&
      !e.message.includes("abab"),
  );
  assert.throws(() => renderSwanctlConf({ ...base, psks: [{ id: 1, hex: "zz".repeat(40) }] }), /not hex-encoded/);
  assert.throws(() => renderSwanctlConf({ ...base, psks: [] }), /needs a pre-shared key/);
  assert.throws(() => renderSwanctlConf({ ...base, psks: [{ id: 0, hex: PSK.hex }] }), /generation id 0/);
  assert.throws(
    () => renderSwanctlConf({ ...base, peers: [{ name: "N2 }", address: "10.0.0.2", podCidrs: [] }] }),
    /not a DNS label-like name/,
  );
  assert.throws(
    () => renderSwanctlConf({ ...base, peers: [{ name: "n2", address: "10.0.0.2}", podCidrs: [] }] }),
    InvalidKernelInput,
  );
  assert.throws(
    () => renderSwanctlConf({ ...base, peers: [{ name: "n2", address: "10.0.0.2", podCidrs: ["10.1.0.0/33"] }] }),
    InvalidKernelInput,
  );
  assert.throws(() => renderSwanctlConf({ ...base, rekeySeconds: 5 }), /rekey time 5s/);
  assert.throws(() => renderSwanctlConf({ ...base, espProposal: "aes128 } x" }), /ESP proposal/);
  assert.throws(() => renderSwanctlConf({ ...base, peers: [base.peers[0], base.peers[0]] }), /listed twice/);
});

test("strongswan.conf: kernel-libipsec before kernel-netlink, private VICI socket, nothing read from /etc", () => {
  const p = charonPaths("/var/lib/weft/ipsec");
  const text = renderStrongswanConf(p, { tunMtu: 1422 });
  golden("strongswan.conf", text);
  assert.ok(CHARON_PLUGINS.indexOf("kernel-libipsec") < CHARON_PLUGINS.indexOf("kernel-netlink"));
  assert.match(text, /socket = unix:\/\/\/var\/lib\/weft\/ipsec\/charon\.vici/);
  assert.doesNotMatch(text, /include/);
  assert.throws(() => renderStrongswanConf(p, { logLevel: 4 }), /would log keys/);
  for (const bad of ["relative", "/a/../b", "/a b", '/a"b', "/a{b", "/" + "x".repeat(100)])
    assert.throws(() => charonPaths(bad), InvalidKernelInput, bad);
});

test("swanctl --list-sas --raw is parsed: SPIs, bytes, age, encapsulation", () => {
  const raw = `list-sa event {weft-n2 {uniqueid=2 version=2 state=ESTABLISHED local-host=10.77.0.1 local-port=4500 local-id=10.77.0.1 remote-host=10.77.0.2 remote-port=4500 remote-id=10.77.0.2 initiator-spi=38d595f0adb3c83e responder-spi=b63c3198fd47606b nat-remote=yes nat-any=yes encr-alg=AES_CBC encr-keysize=128 integ-alg=HMAC_SHA2_256_128 prf-alg=PRF_HMAC_SHA2_256 dh-group=MODP_2048 established=8 rekey-time=109 child-sas {weft-n2-4 {name=weft-n2 uniqueid=4 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=cfb1fff6 spi-out=8d7af5ba encr-alg=AES_CBC encr-keysize=128 integ-alg=HMAC_SHA2_256_128 bytes-in=252 packets-in=3 use-in=4 bytes-out=252 packets-out=3 use-out=4 rekey-time=18 life-time=25 install-time=8 local-ts=[10.78.1.0/24] remote-ts=[10.78.2.0/24]}}}}
list-sas reply {}
`;
  const sas = parseSas(raw);
  assert.equal(sas.length, 1);
  assert.deepEqual(
    { ...sas[0], children: undefined },
    {
      name: "weft-n2",
      uniqueId: 2,
      state: "ESTABLISHED",
      localHost: "10.77.0.1",
      remoteHost: "10.77.0.2",
      established: 8,
      encap: true,
      children: undefined,
    },
  );
  assert.deepEqual(sas[0].children, [
    {
      name: "weft-n2",
      uniqueId: 4,
      state: "INSTALLED",
      spiIn: "cfb1fff6",
      spiOut: "8d7af5ba",
      bytesIn: 252,
      bytesOut: 252,
      packetsIn: 3,
      packetsOut: 3,
      installTime: 8,
      rekeyTime: 18,
      localTs: ["10.78.1.0/24"],
      remoteTs: ["10.78.2.0/24"],
    },
  ]);
  assert.deepEqual(parseSas("list-sas reply {}\n"), []);
});

test("a PID file naming a process that is not this charon is ignored, and nothing is signalled", async () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-charon-"));
  try {
    const p = charonPaths(dir);
    assert.equal(await findCharon(p), null, "no PID file");
    mkdirSync(p.rundir);
    writeFileSync(p.pidfile, `${process.pid}\n`);
    assert.equal(await findCharon(p), null, "our own PID is not a charon");
    assert.equal(await stopCharon(p), null);
    writeFileSync(p.pidfile, "garbage");
    assert.equal(await findCharon(p), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
