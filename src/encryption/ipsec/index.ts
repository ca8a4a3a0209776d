// IPsec between nodes: one strongSwan charon per node (kernel/charon.ts), IKEv2 with the cluster's
// pre-shared key, one CHILD_SA per node pair (local pod CIDRs <-> the peer's). This kernel has no
// ESP, so charon's kernel-libipsec does ESP in userspace, in UDP 4500, over the TUN device ipsec0;
// charon routes each peer's pod CIDRs into it from table 220 (looked up before main), whatever the
// backend wires underneath. Trap policies put those routes in place before any SA exists, and
// libipsec drops a packet without an SA: nothing leaves in clear while a pair comes up. With strict,
// an nft guard also drops pod packets to remote pod addresses that would leave by any other device
// (a peer without a CHILD_SA yet, charon down, the switch from another encryption).
//
// The PSK is the cluster's secret: the agent writes it to <stateDir>/ipsec-psk.json (0600) from the
// store, as {"generations":[{"id":N,"hex":"..."}]}; during a rotation both generations are loaded
// (charon accepts either) and the newest is used for new SAs. It is never logged.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import {
  charonPaths,
  CharonError,
  checkPsk,
  connName,
  findCharon,
  initiateChild,
  IpsecConfigError,
  LIBIPSEC_TUN,
  listSas,
  loadSwanctl,
  removeCharonFiles,
  renderSwanctlConf,
  startCharon,
  stopCharon,
  type CharonPaths,
  type IkeSa,
  type IpsecPeer,
  type PskGeneration,
} from "../../kernel/charon.js";
import { nftApply, nftDeleteTable, nftListTable } from "../../kernel/nft.js";
import { findUnderlay } from "../../kernel/underlay.js";
import { cidr as checkCidr } from "../../kernel/validate.js";
import {
  EncryptionError,
  type Encryption,
  type EncryptionChange,
  type EncryptionData,
  type EncryptionLocal,
  type EncryptionOptions,
  type EncryptionPeer,
  type EncryptionStatus,
  type Family,
  type PeerEncryptionStatus,
  type StartResult,
  type SyncResult,
} from "../types.js";

/**
 * Bytes the pod MTU gives up. ESP in UDP over IPv4 needs at most 85 (IP 20 + UDP 8 + ESP 8 + IV 16 +
 * pad 15 + trailer 2 + ICV 16 for AES-CBC/HMAC-SHA256-128), but libipsec's TUN device has a fixed MTU
 * of 1400 (LIBIPSEC_TUN_MTU): on a 1500 underlay the pods get 1400, i.e. 100 less.
 */
export const IPSEC_OVERHEAD_V4 = 100;
/** The same over IPv6 (40-byte outer header: 105 needed). */
export const IPSEC_OVERHEAD_V6 = 105;
/** kernel-libipsec makes ipsec0 with this MTU and reads packets no larger (not configurable in 5.9). */
export const LIBIPSEC_TUN_MTU = 1400;
export const GUARD_TABLE = "weft_ipsec";
export const PSK_FILE = "ipsec-psk.json";
export const IMPLEMENTATION =
  "strongSwan charon, kernel-libipsec (userspace ESP in UDP 4500 over TUN ipsec0; this kernel has no ESP)";

export interface IpsecOptions extends EncryptionOptions {
  /** CHILD_SA rekey time (default 3600 s). */
  readonly rekeySeconds?: number;
  /** DPD interval (default 10 s). */
  readonly dpdSeconds?: number;
}

interface Published extends EncryptionData {
  readonly ike: "psk";
  /** The IKE identity (the underlay address IKE runs between). */
  readonly id: string;
  /** The newest PSK generation this node has (peers report a mismatch). */
  readonly pskGeneration: number;
}

function isPublished(d: EncryptionData | undefined): d is Published {
  return !!d && d.ike === "psk" && typeof d.id === "string" && isIP(d.id) !== 0 && typeof d.pskGeneration === "number";
}

/** Reads the PSK generations; EncryptionError (never with the key in it) when absent or unusable. */
export async function readPsks(stateDir: string): Promise<PskGeneration[]> {
  const file = join(stateDir, PSK_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new EncryptionError(`IPsec needs the cluster's pre-shared key in ${file}: it is missing`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new EncryptionError(`${file} is not JSON ({"generations":[{"id":1,"hex":"..."}]})`);
  }
  const gens = (parsed as { generations?: unknown }).generations;
  if (!Array.isArray(gens) || gens.length === 0)
    throw new EncryptionError(`${file} holds no PSK generation ({"generations":[{"id":1,"hex":"..."}]})`);
  const out = gens.map((g: unknown) => {
    const k = g as { id?: unknown; hex?: unknown };
    const psk = { id: Number(k.id), hex: String(k.hex) };
    try {
      checkPsk(psk);
    } catch (e) {
      throw new EncryptionError(`${file}: ${(e as Error).message}`);
    }
    return psk;
  });
  return out;
}

/** The guard: pod packets to remote pod addresses leave by the TUN device or not at all. */
export function renderGuard(local: EncryptionLocal, strict: boolean): string {
  const reset = `table inet ${GUARD_TABLE} {}\ndelete table inet ${GUARD_TABLE}\n`;
  if (!strict) return reset;
  const lines: string[] = [];
  for (const fam of [4, 6] as const) {
    const cluster = local.clusterCIDRs.filter((c) => isIP(checkCidr(c).split("/")[0]) === fam);
    if (cluster.length === 0) continue;
    const own = fam === 4 ? local.podCIDRs.ipv4 : local.podCIDRs.ipv6;
    const kw = fam === 4 ? "ip" : "ip6";
    lines.push(
      `    ${kw} daddr { ${cluster.join(", ")} }${own ? ` ${kw} daddr != ${checkCidr(own)}` : ""} counter drop comment "pod traffic to a remote node must go through IPsec"`,
    );
  }
  return `${reset}table inet ${GUARD_TABLE} {
  chain out {
    type filter hook postrouting priority 0; policy accept;
    oifname "${LIBIPSEC_TUN}" accept
${lines.join("\n")}
  }
}
`;
}

export class IpsecEncryption implements Encryption {
  readonly name = "ipsec" as const;
  private readonly paths: CharonPaths;
  private local: EncryptionLocal | undefined;
  private peers: readonly EncryptionPeer[] = [];
  private psks: PskGeneration[] = [];
  private readonly seenSince = new Map<string, { spi: string; since: string }>();
  /** A charon this object started (not adopted) has no connections yet, whatever swanctl.conf says. */
  private mustLoad = true;

  constructor(private readonly o: IpsecOptions) {
    this.paths = charonPaths(join(o.stateDir, "ipsec"));
  }

  private get guardFile(): string {
    return join(this.o.stateDir, "ipsec-guard.nft");
  }

  /** The PID of this node's charon, or undefined when none runs. */
  async daemonPid(): Promise<number | undefined> {
    return (await findCharon(this.paths)) ?? undefined;
  }

  overhead(underlayFamily: Family): number {
    return underlayFamily === 6 ? IPSEC_OVERHEAD_V6 : IPSEC_OVERHEAD_V4;
  }

  private localId(local: EncryptionLocal): string {
    const id = local.underlay.ipv4 ?? local.underlay.ipv6;
    if (!id) throw new EncryptionError(`node ${local.name} has no underlay address: IPsec has nothing to run between`);
    return id;
  }

  async start(local: EncryptionLocal): Promise<StartResult> {
    const id = this.localId(local);
    // Everything that can be refused is checked before anything is made: a bad PSK leaves nothing behind.
    this.psks = await readPsks(this.o.stateDir);
    const ctx = this.o.kernel ?? {};
    const under = await findUnderlay(ctx, id);
    if (!under) throw new EncryptionError(`no interface holds the underlay address ${id} in the node's namespace`);
    const tunMtu = Math.min(LIBIPSEC_TUN_MTU, under.mtu - this.overhead(isIP(id) === 6 ? 6 : 4));
    const changes: EncryptionChange[] = [];
    const guard = renderGuard(local, this.o.strict !== false);
    let started: { pid: number; adopted: boolean };
    let guardChanged = false;
    try {
      // The guard first: from here on a pod packet to a remote pod is encrypted or dropped. A
      // restarted agent re-applies it only when it differs (or is gone): a restart changes nothing.
      guardChanged =
        (await readFile(this.guardFile, "utf8").catch(() => null)) !== guard ||
        (await nftListTable(GUARD_TABLE, ctx)) === null;
      if (guardChanged) {
        await mkdir(this.paths.dir, { recursive: true, mode: 0o700 });
        await nftApply(guard, ctx);
        await writeFile(this.guardFile, guard, { mode: 0o600 });
      }
      started = await startCharon(this.paths, { ...(this.o.kernel ?? {}), tunMtu });
    } catch (e) {
      if (e instanceof CharonError || e instanceof IpsecConfigError) throw new EncryptionError(e.message);
      throw e;
    }
    if (this.o.strict !== false)
      changes.push({ action: "replace", object: "guard", detail: `nft table inet ${GUARD_TABLE}` });
    if (!started.adopted)
      changes.push({
        action: "add",
        object: "daemon",
        detail: `charon pid ${started.pid} (kernel-libipsec, TUN ${LIBIPSEC_TUN})`,
      });
    this.local = local;
    this.mustLoad = !started.adopted;
    const newest = Math.max(...this.psks.map((k) => k.id));
    const data: Published = { ike: "psk", id, pskGeneration: newest };
    return { data, device: LIBIPSEC_TUN, podMtu: tunMtu, adopted: started.adopted, changes };
  }

  async sync(peers: readonly EncryptionPeer[]): Promise<SyncResult> {
    const local = this.local;
    if (!local) throw new EncryptionError("IPsec sync before start");
    this.peers = peers.filter((p) => p.name !== local.name);
    const usable: IpsecPeer[] = [];
    for (const p of this.peers) {
      if (!isPublished(p.data)) continue;
      const pods = [p.podCIDRs.ipv4, p.podCIDRs.ipv6].filter((c): c is string => !!c);
      usable.push({ name: p.name, address: p.data.id, podCidrs: pods });
    }
    const text = renderSwanctlConf({
      local: {
        name: local.name,
        address: this.localId(local),
        podCidrs: [local.podCIDRs.ipv4, local.podCIDRs.ipv6].filter((c): c is string => !!c),
      },
      peers: usable,
      psks: this.psks,
      nodeToNode: this.o.nodeToNode === true,
      ...(this.o.rekeySeconds !== undefined ? { rekeySeconds: this.o.rekeySeconds } : {}),
      ...(this.o.dpdSeconds !== undefined ? { dpdSeconds: this.o.dpdSeconds } : {}),
    });
    const changes: EncryptionChange[] = [];
    try {
      const loaded = await loadSwanctl(this.paths, text, this.mustLoad);
      this.mustLoad = false;
      if (loaded)
        changes.push({
          action: "replace",
          object: "peer",
          detail: `swanctl.conf: ${usable.length} peer connection(s)`,
        });
      // An initiation that met a peer without our connection yet (NO_PROPOSAL_CHOSEN) is not retried
      // by charon, and libipsec's trap raises no acquire: start every pair that has no IKE_SA at all.
      const sas = await listSas(this.paths);
      for (const p of usable)
        if (!sas.some((s) => s.name === connName(p.name))) {
          await initiateChild(this.paths, connName(p.name));
          changes.push({ action: "add", object: "peer", peer: p.name, detail: `IKE with ${p.address} initiated` });
        }
    } catch (e) {
      if (e instanceof CharonError) throw new EncryptionError(e.message);
      throw e;
    }
    return { status: await this.status(), changes };
  }

  async status(): Promise<EncryptionStatus> {
    const errors: string[] = [];
    const pid = await findCharon(this.paths);
    let sas: IkeSa[] = [];
    if (pid === null) errors.push("charon is not running: pod traffic to other nodes is dropped (strict)");
    else
      sas = await listSas(this.paths).catch((e: Error) => {
        errors.push(`charon does not answer over VICI: ${e.message}`);
        return [];
      });
    const newest = this.psks.length ? Math.max(...this.psks.map((k) => k.id)) : 0;
    const peers: PeerEncryptionStatus[] = this.peers.map((p) => {
      const base = { name: p.name, type: "ipsec" as const };
      if (!isPublished(p.data))
        return {
          ...base,
          ok: false,
          errors: [
            p.data === undefined
              ? `${p.name} has not published its IPsec identity yet: traffic to it is dropped (strict)`
              : `${p.name} published invalid IPsec data (expected {ike:"psk", id:<address>, pskGeneration:<n>}): traffic to it is dropped (strict)`,
          ],
        };
      const ike = sas.find((s) => s.name === connName(p.name) && s.state === "ESTABLISHED");
      const child = ike?.children
        .filter((c) => c.state === "INSTALLED")
        .sort((a, b) => a.installTime - b.installTime)[0];
      const errs: string[] = [];
      if (p.data.pskGeneration !== newest && newest !== 0)
        errs.push(`${p.name} uses PSK generation ${p.data.pskGeneration}, this node ${newest}`);
      if (!child)
        errs.push(`no CHILD_SA with ${p.name} (${p.data.id}) yet: traffic to it is dropped until IKE completes`);
      let keySince: string | undefined;
      if (child) {
        const prev = this.seenSince.get(p.name);
        const since =
          prev && prev.spi === child.spiOut
            ? prev.since
            : new Date(Date.now() - child.installTime * 1000).toISOString();
        this.seenSince.set(p.name, { spi: child.spiOut, since });
        keySince = since;
      }
      return {
        ...base,
        ok: !!child,
        identity: child ? `${p.data.id} SPI in ${child.spiIn} out ${child.spiOut}` : p.data.id,
        ...(keySince ? { keySince } : {}),
        ...(ike ? { lastHandshake: new Date(Date.now() - ike.established * 1000).toISOString() } : {}),
        ...(child ? { rxBytes: child.bytesIn, txBytes: child.bytesOut } : {}),
        errors: errs,
      };
    });
    return {
      type: "ipsec",
      implementation: IMPLEMENTATION,
      device: LIBIPSEC_TUN,
      ...(pid !== null ? { pid } : {}),
      ...(this.local ? { identity: this.localId(this.local) } : {}),
      strict: this.o.strict !== false,
      peers,
      errors,
    };
  }

  async stop(options: { teardown: boolean }): Promise<void> {
    if (!options.teardown) return; // charon, its SAs and the guard keep the pods' traffic going
    const ctx = this.o.kernel ?? {};
    // charon first (it removes its routes and the TUN device on exit), the guard last: no window
    // in which pod traffic could leave by the main table in clear while charon still had routes.
    await stopCharon(this.paths);
    await removeCharonFiles(this.paths);
    await nftDeleteTable(GUARD_TABLE, ctx);
    await rm(this.guardFile, { force: true });
  }
}

export function createIpsec(options: EncryptionOptions): Encryption {
  return new IpsecEncryption(options);
}

/** With test knobs (rekey time, DPD interval) the cluster setting does not carry. */
export function createIpsecWith(options: IpsecOptions): Encryption {
  return new IpsecEncryption(options);
}
