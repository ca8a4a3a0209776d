// WireGuard between nodes (flannel's and Calico's model, with wireguard-go where the kernel has no
// WireGuard): each node makes its key pair once, publishes the public key and port, and holds one
// WireGuard peer per other node whose allowed IPs are that node's pod subnets (and its underlay
// address with nodeToNode). Pod traffic to a remote pod subnet is steered into the device by a
// policy routing table looked up before main, so WireGuard replaces the backend's path for pod
// traffic (VXLAN is not run inside WireGuard: one encapsulation, 60 bytes instead of 110).
// wireguard-go runs as its own process that outlives the agent (kernel/wireguard.ts).
import { createHash } from "node:crypto";
import { join } from "node:path";
import { findUnderlay } from "../../kernel/underlay.js";
import type { KernelContext } from "../../kernel/tracked.js";
import {
  applyGuard,
  ensureLinkUp,
  ensureSteerRule,
  guardDrops,
  linkExists,
  removeGuard,
  removeSteering,
  syncSteerRoutes,
  type SteerRoute,
} from "../../kernel/wireguard-route.js";
import {
  findWireguardGo,
  privateDir,
  startWireguardGo,
  stopWireguardGo,
  wgGet,
  wgSet,
  type WgDeviceState,
  type WgPeerOp,
} from "../../kernel/wireguard.js";
import { cidrOrThrow, formatCidr } from "../../net/cidr.js";
import type { IpFamily as Family } from "../../net/ip.js";
import {
  EncryptionError,
  type Encryption,
  type EncryptionChange,
  type EncryptionLocal,
  type EncryptionOptions,
  type EncryptionPeer,
  type EncryptionStatus,
  type PeerEncryptionStatus,
  type StartResult,
  type SyncResult,
} from "../types.js";
import { fromHex, isWgKey, loadOrCreateKey, toHex, type KeyPair } from "./keys.js";

export const WG_PORT = 51820;
/** The steering table and the mark wireguard-go puts on its own (outer) packets, which skip the table. */
export const WG_TABLE = 51820;
export const WG_FWMARK = 0x5746;
export const WG_RULE_PRIORITY = 90;
export const WG_GUARD_TABLE = "weft_encrypt";
/** IP + UDP + WireGuard header and tag: 20+8+32 (IPv4 underlay), 40+8+32 (IPv6). */
export const WG_OVERHEAD: Record<Family, number> = { 4: 60, 6: 80 };

/** A device name unique per host (the UAPI socket directory is shared by every namespace): from the state dir. */
export function wireguardDevice(stateDir: string): string {
  return `wft${createHash("sha256").update(stateDir).digest("hex").slice(0, 10)}`;
}

export interface WireguardOptions extends EncryptionOptions {
  readonly port?: number;
  /** Device name; default from the state dir (unique per host). */
  readonly device?: string;
}

/** A peer's published data, checked: a bad key is the peer's error, never a kernel write. */
export function readPeerData(p: EncryptionPeer): { publicKey: string; port: number } | { error: string } {
  const d = p.data;
  if (d === undefined) return { error: "has not published a WireGuard key yet" };
  if (d.type !== "wireguard")
    return { error: `publishes encryption ${JSON.stringify(d.type)}, not wireguard (it has not switched yet)` };
  if (!isWgKey(d.publicKey))
    return { error: `published an invalid WireGuard public key ${JSON.stringify(d.publicKey).slice(0, 60)}` };
  const port = d.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
    return { error: `published an invalid WireGuard port ${JSON.stringify(port)}` };
  return { publicKey: d.publicKey, port };
}

export class WireguardEncryption implements Encryption {
  readonly name = "wireguard" as const;
  readonly device: string;
  private readonly ctx: KernelContext;
  private readonly dir: string;
  private readonly port: number;
  private readonly strict: boolean;
  private readonly nodeToNode: boolean;
  private local: EncryptionLocal | undefined;
  private key: (KeyPair & { created: boolean }) | undefined;
  private pid: number | undefined;
  private mtu = 0;
  /** Per peer: its key as last seen, and since when (key age). */
  private readonly seen = new Map<string, { key: string; since: Date }>();
  private peerErrors = new Map<string, string>();
  private peerNames = new Map<string, string>();
  private errors: string[] = [];

  constructor(private readonly o: WireguardOptions) {
    this.ctx = o.kernel ?? {};
    this.dir = join(o.stateDir, "wireguard");
    this.port = o.port ?? WG_PORT;
    this.device = o.device ?? wireguardDevice(o.stateDir);
    this.strict = o.strict ?? true;
    this.nodeToNode = o.nodeToNode ?? false;
  }

  get pidfile(): string {
    return join(this.dir, "wireguard-go.pid");
  }
  get keyFile(): string {
    return join(this.dir, "private.key");
  }

  overhead(underlayFamily: Family): number {
    return WG_OVERHEAD[underlayFamily];
  }

  async start(local: EncryptionLocal): Promise<StartResult> {
    return this.startWith(local, false);
  }

  /** A new key pair (rotation): the device takes it at once; peers follow when they see it published. */
  async rotate(): Promise<StartResult> {
    if (!this.local) throw new EncryptionError("wireguard: rotate() before start()");
    return this.startWith(this.local, true);
  }

  private async startWith(local: EncryptionLocal, rotate: boolean): Promise<StartResult> {
    this.local = local;
    const family: Family = local.underlay.ipv4 ? 4 : 6;
    const address = local.underlay.ipv4 ?? local.underlay.ipv6;
    if (!address)
      throw new EncryptionError(`node ${local.name} has no underlay address: WireGuard has nothing to send from`);
    const u = await findUnderlay(this.ctx, address);
    if (!u) throw new EncryptionError(`node ${local.name}: underlay address ${address} is on no interface here`);
    this.mtu = u.mtu - this.overhead(family);
    const changes: EncryptionChange[] = [];
    await privateDir(this.dir);
    try {
      this.key = await loadOrCreateKey(this.keyFile, rotate);
    } catch (e) {
      throw new EncryptionError(`wireguard: ${(e as Error).message}`);
    }
    if (this.key.created)
      changes.push({
        action: rotate ? "replace" : "add",
        object: "key",
        detail: `new key pair, public ${this.key.publicKey}`,
      });
    // Adopt the daemon a previous agent started (its device and peers carry traffic right now).
    let pid = await findWireguardGo(this.pidfile, this.device);
    const adopted = pid !== null && (await linkExists(this.ctx, this.device));
    if (!adopted) {
      if (pid !== null) await stopWireguardGo(this.pidfile, this.device);
      try {
        pid = await startWireguardGo(this.device, {
          ...(this.ctx.netns ? { netns: this.ctx.netns } : {}),
          pidfile: this.pidfile,
          logFile: join(this.dir, "wireguard-go.log"),
        });
      } catch (e) {
        throw new EncryptionError(`wireguard: ${(e as Error).message}`);
      }
      changes.push({ action: "add", object: "daemon", detail: `wireguard-go ${this.device} pid ${pid}` });
    }
    this.pid = pid ?? undefined;
    const state = await wgGet(this.device);
    const want = { privateKey: toHex(this.key.privateKey), listenPort: this.port, fwmark: WG_FWMARK };
    if (state.privateKey !== want.privateKey || state.listenPort !== want.listenPort || state.fwmark !== want.fwmark) {
      await wgSet(this.device, want);
      changes.push({ action: "replace", object: "link", detail: `${this.device} key, port ${this.port}, fwmark` });
    }
    for (const c of await ensureLinkUp(this.ctx, this.device, this.mtu))
      changes.push({ action: "replace", object: "link", detail: c });
    for (const c of await ensureSteerRule(this.ctx, WG_TABLE, WG_FWMARK, WG_RULE_PRIORITY))
      changes.push({ action: "add", object: "rule", detail: c });
    if (this.strict) await this.applyGuard();
    return {
      data: { type: "wireguard", publicKey: this.key.publicKey, port: this.port },
      device: this.device,
      podMtu: this.mtu,
      adopted,
      changes,
    };
  }

  private async applyGuard(): Promise<void> {
    const local = this.local!;
    await applyGuard(this.ctx, {
      table: WG_GUARD_TABLE,
      allowedDevices: [this.device],
      clusterCIDRs: local.clusterCIDRs.map((c) => formatCidr(cidrOrThrow(c, { hostBits: "clear" }))),
      localCIDRs: [local.podCIDRs.ipv4, local.podCIDRs.ipv6].filter((c): c is string => c !== undefined),
    });
  }

  async sync(peers: readonly EncryptionPeer[]): Promise<SyncResult> {
    const local = this.local;
    if (!local || !this.key) throw new EncryptionError("wireguard: sync() before start()");
    const changes: EncryptionChange[] = [];
    const errors: string[] = [];
    const state = await wgGet(this.device);
    const have = new Map(state.peers.map((p) => [p.publicKey, p]));
    const wantPeers = new Map<string, WgPeerOp & { op: "set" }>();
    const routes: SteerRoute[] = [];
    this.peerErrors = new Map();
    this.peerNames = new Map();
    const ownKey = toHex(this.key.publicKey);
    for (const p of peers) {
      if (p.name === local.name) continue;
      const podCIDRs = [p.podCIDRs.ipv4, p.podCIDRs.ipv6].filter((c): c is string => c !== undefined);
      const d = readPeerData(p);
      const endpointAddr =
        local.underlay.ipv4 && p.underlay.ipv4
          ? p.underlay.ipv4
          : local.underlay.ipv6 && p.underlay.ipv6
            ? `[${p.underlay.ipv6}]`
            : undefined;
      let problem = "error" in d ? d.error : undefined;
      if (!problem && endpointAddr === undefined) problem = "shares no underlay address family with this node";
      if (!problem && "publicKey" in d && toHex(d.publicKey) === ownKey)
        problem = "published this node's own public key";
      if (problem || !("publicKey" in d)) {
        this.peerErrors.set(p.name, problem!);
        this.seen.delete(p.name);
        // Strict: its pod subnets are blackholed here, never left to the backend's clear path.
        if (this.strict) for (const c of podCIDRs) routes.push({ dst: c, via: "blackhole" });
        continue;
      }
      const hex = toHex(d.publicKey);
      this.peerNames.set(hex, p.name);
      const prev = this.seen.get(p.name);
      if (!prev || prev.key !== d.publicKey) this.seen.set(p.name, { key: d.publicKey, since: new Date() });
      const nodeAddrs = this.nodeToNode
        ? [p.underlay.ipv4 && `${p.underlay.ipv4}/32`, p.underlay.ipv6 && `${p.underlay.ipv6}/128`].filter(
            (c): c is string => !!c,
          )
        : [];
      const allowed = [...podCIDRs, ...nodeAddrs].map((c) => formatCidr(cidrOrThrow(c, { hostBits: "clear" })));
      // Two nodes publishing one key: only the first is wired, the other is an error.
      if (wantPeers.has(hex)) {
        this.peerErrors.set(p.name, `publishes the same WireGuard key as ${this.peerNames.get(hex)}`);
        continue;
      }
      wantPeers.set(hex, {
        op: "set",
        publicKey: hex,
        endpoint: `${endpointAddr}:${d.port}`,
        allowedIPs: allowed.sort(),
        keepalive: 0,
      });
      for (const c of allowed) routes.push({ dst: c, via: "dev" });
    }
    const ops: WgPeerOp[] = [];
    for (const k of have.keys())
      if (!wantPeers.has(k)) {
        ops.push({ op: "remove", publicKey: k });
        changes.push({ action: "delete", object: "peer", detail: `key ${fromHex(k)}` });
      }
    for (const [k, w] of wantPeers) {
      const h = have.get(k);
      if (h && h.endpoint === w.endpoint && h.allowedIPs.join() === w.allowedIPs.join()) continue;
      ops.push(w);
      const name = this.peerNames.get(k);
      changes.push({
        action: h ? "replace" : "add",
        object: "peer",
        detail: `${name} key ${fromHex(k)} endpoint ${w.endpoint} allowed ${w.allowedIPs.join(",")}`,
        ...(name ? { peer: name } : {}),
      });
    }
    // Removals and additions in one request: a key change swaps the peer at once.
    if (ops.length) await wgSet(this.device, { peers: ops });
    try {
      for (const c of await syncSteerRoutes(this.ctx, WG_TABLE, this.device, routes))
        changes.push({ action: c.startsWith("delete") ? "delete" : "replace", object: "route", detail: c });
    } catch (e) {
      errors.push(`steering routes: ${(e as Error).message}`);
    }
    this.errors = errors;
    return { status: await this.status(ops.length ? undefined : state), changes };
  }

  async status(known?: WgDeviceState): Promise<EncryptionStatus> {
    const errors = [...this.errors];
    let state = known;
    if (!state)
      try {
        state = await wgGet(this.device);
      } catch (e) {
        errors.push(`wireguard-go ${this.device} does not answer: ${(e as Error).message}`);
      }
    const pid = await findWireguardGo(this.pidfile, this.device);
    if (pid === null) errors.push(`wireguard-go for ${this.device} is not running`);
    if (this.strict) {
      const drops = await guardDrops(this.ctx, WG_GUARD_TABLE).catch(() => null);
      if (drops === null) errors.push(`the strict guard (nft table inet ${WG_GUARD_TABLE}) is missing`);
    }
    const peers: PeerEncryptionStatus[] = [];
    for (const p of state?.peers ?? []) {
      const name = this.peerNames.get(p.publicKey) ?? `unknown (${fromHex(p.publicKey)})`;
      const seen = this.seen.get(name);
      peers.push({
        name,
        type: "wireguard",
        ok: true,
        identity: fromHex(p.publicKey),
        ...(seen ? { keySince: seen.since.toISOString() } : {}),
        ...(p.lastHandshake ? { lastHandshake: new Date(p.lastHandshake * 1000).toISOString() } : {}),
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        errors: [],
      });
    }
    for (const [name, error] of this.peerErrors)
      peers.push({
        name,
        type: "wireguard",
        ok: false,
        errors: [
          `${error}: ${this.strict ? "traffic to its pods is dropped (strict)" : "traffic to its pods goes in clear (not strict)"}`,
        ],
      });
    peers.sort((a, b) => a.name.localeCompare(b.name));
    return {
      type: "wireguard",
      implementation: "wireguard-go (userspace: this kernel has no WireGuard)",
      device: this.device,
      ...(pid !== null ? { pid } : {}),
      ...(this.key ? { identity: this.key.publicKey, keyCreatedAt: this.key.createdAt.toISOString() } : {}),
      strict: this.strict,
      peers,
      errors,
    };
  }

  async stop(options: { teardown: boolean }): Promise<void> {
    if (!options.teardown) return;
    // Steering first: with the routes gone and no guard, pod traffic takes the backend's path.
    await removeSteering(this.ctx, WG_TABLE, WG_RULE_PRIORITY);
    await removeGuard(this.ctx, WG_GUARD_TABLE);
    await stopWireguardGo(this.pidfile, this.device);
  }
}

export function createWireguard(options: EncryptionOptions): Encryption {
  return new WireguardEncryption(options);
}
