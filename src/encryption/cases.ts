// The one case suite every encryption implementation runs (as src/backends/testing/suite.ts does
// for backends): real namespaces, a real backend under it, the real daemon. Each case checks what a
// user would: pods reach pods; a capture on every node's underlay shows no packet carrying a pod
// address in clear (outer or inner: tcpdump decodes VXLAN); a peer without its key is dropped, not
// sent in clear; a restart keeps the daemon; teardown leaves nothing.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { createBackend } from "../backends/index.js";
import { buildTopology, ping, reaches, type Topology } from "../backends/testing/topology.js";
import type { Backend, BackendName, PeerNode } from "../backends/types.js";
import { run } from "../kernel/exec.js";
import type { IpFamily as Family } from "../net/ip.js";
import type { Encryption, EncryptionOptions, EncryptionPeer, StartResult } from "./types.js";

export interface EncryptionSuiteOptions {
  readonly title: string;
  readonly create: (o: EncryptionOptions) => Encryption;
  /** Expected overhead on an IPv4 underlay (WireGuard 60). */
  readonly overhead4: number;
  /** The daemon's PID, for the restart case (undefined: the implementation runs none). */
  readonly daemonPid: (e: Encryption) => Promise<number | undefined>;
}

export interface Member {
  readonly name: string;
  readonly netns: string;
  readonly stateDir: string;
  readonly backend: Backend;
  enc: Encryption;
  start: StartResult;
}

export interface EncCluster {
  readonly topo: Topology;
  readonly members: Member[];
  readonly clusterCIDRs: string[];
  peers(omit?: { data?: string }): EncryptionPeer[];
  syncAll(peers?: EncryptionPeer[]): Promise<void>;
  destroy(): Promise<void>;
}

export async function startEncCluster(
  o: EncryptionSuiteOptions,
  backendName: BackendName,
  families: Family[],
  nodes = 2,
  extra: Partial<EncryptionOptions> = {},
): Promise<EncCluster> {
  const topo = await buildTopology({ subnets: Array.from({ length: nodes }, () => 0), podFamilies: families });
  const clusterCIDRs = [
    ...(families.includes(4) ? ["10.244.0.0/16"] : []),
    ...(families.includes(6) ? ["fd00:244::/48"] : []),
  ];
  const members: Member[] = [];
  const cluster: EncCluster = {
    topo,
    members,
    clusterCIDRs,
    peers: (omit = {}) =>
      members.map((m, i) => ({
        name: m.name,
        underlay: topo.nodes[i].local.underlay,
        podCIDRs: topo.nodes[i].local.podCIDRs,
        data: omit.data === m.name ? undefined : m.start.data,
      })),
    syncAll: async (peers = cluster.peers()) => {
      for (const m of members) await m.enc.sync(peers);
    },
    destroy: async () => {
      for (const m of members) await m.enc.stop({ teardown: true }).catch(() => undefined);
      await topo.destroy();
      for (const m of members) await rm(m.stateDir, { recursive: true, force: true });
    },
  };
  try {
    for (const n of topo.nodes) {
      const stateDir = await mkdtemp(join(tmpdir(), "weft-enc-"));
      const kernel = { netns: n.netns };
      const backend = createBackend(backendName, { kernel, stateDir });
      const enc = o.create({ stateDir, kernel, strict: true, ...extra });
      members.push({
        name: n.name,
        netns: n.netns,
        stateDir,
        backend,
        enc,
        start: undefined as unknown as StartResult,
      });
      const m = members[members.length - 1];
      await backend.setup(n.local);
      m.start = await enc.start({ ...n.local, clusterCIDRs });
    }
    const bpeers: PeerNode[] = [];
    for (let i = 0; i < members.length; i++) {
      const setup = await members[i].backend.setup(topo.nodes[i].local);
      bpeers.push({ ...topo.nodes[i].local, backendData: setup.data });
    }
    for (const m of members) await m.backend.syncPeers(bpeers);
    await cluster.syncAll();
    return cluster;
  } catch (e) {
    await cluster.destroy();
    throw e;
  }
}

/** tcpdump on a node's underlay interface (eth0) into a pcap file; stop() returns the decoded lines. */
export function capture(netns: string, file: string): { ready: Promise<void>; stop(): Promise<string[]> } {
  const child = spawn(
    "nsenter",
    [`--net=${netns}`, "--", "tcpdump", "-Z", "root", "--immediate-mode", "-U", "-n", "-i", "eth0", "-w", file],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let ready = false;
  child.stderr.on("data", (d: Buffer) => {
    if (String(d).includes("listening")) ready = true;
  });
  const started = new Promise<void>((resolve) => {
    const t = setInterval(() => {
      if (ready || child.exitCode !== null) {
        clearInterval(t);
        resolve();
      }
    }, 10);
  });
  return {
    ready: started,
    stop: async () => {
      await started;
      const exited = new Promise((r) => child.once("exit", r));
      if (child.pid) process.kill(child.pid, "SIGTERM");
      await exited;
      // tcpdump decodes VXLAN's inner packet on its IANA port 4789; WireGuard's payload stays opaque.
      const out = await run(["tcpdump", "-n", "-r", file]).catch(() => "");
      return out.split("\n").filter(Boolean);
    },
  };
}

/** Lines of a capture that carry a pod address (10.244.x or fd00:244:) anywhere: plaintext. */
export function plaintext(lines: readonly string[]): string[] {
  return lines.filter((l) => /\b10\.244\.\d+\.\d+|fd00:244:/.test(l));
}

export async function startCaptures(c: EncCluster, dir: string): Promise<{ stop(): Promise<string[]> }> {
  const caps = c.members.map((m, i) => capture(m.netns, join(dir, `n${i}.pcap`)));
  // Wait until every tcpdump listens (its "listening on" line).
  await Promise.all(caps.map((x) => x.ready));
  return {
    stop: async () => (await Promise.all(caps.map((x) => x.stop()))).flat(),
  };
}

export function encryptionSuite(o: EncryptionSuiteOptions): void {
  describe(o.title, () => {
    for (const backend of ["host-gw", "vxlan"] as const)
      for (const families of [[4], [4, 6]] as Family[][])
        test(`${backend}, IPv${families.join("+")}: pods reach pods, and no pod address crosses the underlay in clear`, async () => {
          const c = await startEncCluster(o, backend, families);
          const dir = await mkdtemp(join(tmpdir(), "weft-enc-cap-"));
          try {
            assert.equal(c.members[0].start.podMtu, 1500 - o.overhead4, "pod MTU ceiling = underlay - overhead");
            const caps = await startCaptures(c, dir);
            const [a, b] = c.topo.nodes;
            for (const f of families) {
              const to = f === 4 ? b.pod.ipv4! : b.pod.ipv6!;
              assert.ok(await reaches(a.pod.netns, to), `pod on node0 reaches ${to}`);
              const back = f === 4 ? a.pod.ipv4! : a.pod.ipv6!;
              assert.ok(await reaches(b.pod.netns, back), `pod on node1 reaches ${back}`);
            }
            const lines = await caps.stop();
            assert.ok(lines.length > 0, "the capture saw the tunnel's packets");
            assert.deepEqual(plaintext(lines), [], "no packet on the underlay carries a pod address in clear");
            const st = await c.members[0].enc.status();
            assert.equal(st.peers.length, 1);
            assert.ok(st.peers[0].ok && st.peers[0].lastHandshake, `peer handshake: ${JSON.stringify(st.peers[0])}`);
          } finally {
            await c.destroy();
            await rm(dir, { recursive: true, force: true });
          }
        });

    test("join window: a peer whose key is unknown is dropped (strict), never sent in clear; it connects once the key is known", async () => {
      const c = await startEncCluster(o, "vxlan", [4]);
      const dir = await mkdtemp(join(tmpdir(), "weft-enc-cap-"));
      try {
        const [a, b] = c.topo.nodes;
        // node0 does not know node1's key.
        await c.members[0].enc.sync(c.peers({ data: b.name }));
        const caps = await startCaptures(c, dir);
        assert.equal(await ping(a.pod.netns, b.pod.ipv4!, 1), false, "no reply without the key");
        const st = await c.members[0].enc.status();
        const p = st.peers.find((x) => x.name === b.name);
        assert.ok(p && !p.ok && /not published/.test(p.errors.join()), `status names the peer: ${JSON.stringify(p)}`);
        const t0 = Date.now();
        await c.members[0].enc.sync(c.peers());
        assert.ok(await reaches(a.pod.netns, b.pod.ipv4!), "reaches once the key is known");
        assert.ok(Date.now() - t0 < 3000);
        assert.deepEqual(plaintext(await caps.stop()), [], "nothing in clear");
      } finally {
        await c.destroy();
        await rm(dir, { recursive: true, force: true });
      }
    });

    test("restart: a new instance adopts the daemon (same PID), writes nothing, traffic flows; bad peer data is that peer's error", async () => {
      const c = await startEncCluster(o, "host-gw", [4], 3);
      try {
        const [a, b, x] = c.topo.nodes;
        const m = c.members[0];
        const pid = await o.daemonPid(m.enc);
        await m.enc.stop({ teardown: false });
        m.enc = o.create({ stateDir: m.stateDir, kernel: { netns: m.netns }, strict: true });
        const again = await m.enc.start({ ...a.local, clusterCIDRs: c.clusterCIDRs });
        assert.equal(again.adopted, true);
        assert.deepEqual(again.changes, [], "a restart on an unchanged node changes nothing");
        assert.deepEqual(again.data, m.start.data, "same key");
        assert.equal(await o.daemonPid(m.enc), pid, "the daemon keeps its PID");
        const r = await m.enc.sync(c.peers());
        assert.deepEqual(r.changes, [], "the first sync after a restart writes nothing");
        assert.ok(await reaches(a.pod.netns, b.pod.ipv4!));
        // Node 2 publishes garbage: its own error, node 1 unaffected.
        const bad = c
          .peers()
          .map((p) => (p.name === x.name ? { ...p, data: { type: "wireguard", publicKey: "nope", port: 1 } } : p));
        await m.enc.sync(bad);
        const st = await m.enc.status();
        assert.match(st.peers.find((p) => p.name === x.name)?.errors.join() ?? "", /invalid/);
        assert.ok(st.peers.find((p) => p.name === b.name)?.ok);
        assert.ok(await reaches(a.pod.netns, b.pod.ipv4!), "the other peer still works");
        assert.equal(await ping(a.pod.netns, x.pod.ipv4!, 1), false, "the bad peer is dropped");
      } finally {
        await c.destroy();
      }
    });

    test("teardown removes the daemon, the steering and the guard: pods go by the backend again", async () => {
      const c = await startEncCluster(o, "host-gw", [4]);
      const dir = await mkdtemp(join(tmpdir(), "weft-enc-cap-"));
      try {
        const [a, b] = c.topo.nodes;
        for (const m of c.members) await m.enc.stop({ teardown: true });
        for (const m of c.members) {
          assert.equal(await o.daemonPid(m.enc), undefined);
          const nft = await run(["nft", "list", "ruleset"], { netns: m.netns });
          assert.doesNotMatch(nft, /weft_encrypt/);
          const rules = await run(["ip", "rule", "show"], { netns: m.netns });
          assert.doesNotMatch(rules, /fwmark/);
        }
        // The oracle's control: without encryption the same capture does see pod addresses.
        const caps = await startCaptures(c, dir);
        assert.ok(await reaches(a.pod.netns, b.pod.ipv4!), "clear path via the backend");
        assert.notDeepEqual(
          plaintext(await caps.stop()),
          [],
          "the capture sees clear pod traffic once encryption is off",
        );
      } finally {
        await c.destroy();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
}
