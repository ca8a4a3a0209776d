// The agent's operations (ADD, DEL, CHECK, GC, STATUS, ipam check) over the IPAM store and the
// kernel. Every attachment is recorded as 'adding' before the kernel is touched and as 'ready'
// after, so reconcile() can undo half-made pods after a crash without touching finished ones.
import { existsSync } from "node:fs";
import type { Logger } from "pino";
import type { Result, Route } from "../cni/types.js";
import { type Pool, usableRange } from "../ipam/pool.js";
import { cidrHas } from "../net/cidr.js";
import { canonicalIp, formatIp, ipOrThrow, parseIp, type IpFamily as Family } from "../net/ip.js";
import { type AttachmentKey, type AttachmentRecord, IpamError, type IpamStore, type PodRef } from "../ipam/store.js";
import type { LocalPod } from "../policy/index.js";
import { KernelCommandError } from "../kernel/exec.js";
import { GATEWAY_V4, GATEWAY_V6, type PodKernel, type PodRoute } from "../kernel/pod/types.js";
import { InvalidKernelInput } from "../kernel/validate.js";
import { netnsFileState } from "../kernel/nsfile.js";
import { AgentCode, AgentFailure } from "./codes.js";
import { KeyedMutex, Semaphore } from "./locks.js";
import { LinkReaper } from "./reaper.js";
import { HOST_IF_PATTERN, hostIfName, randomMac } from "./naming.js";
import type {
  AddRequest, AgentRequest, AgentResponse, CheckRequest, DelRequest, GcRequest, IpamCheckReport, IpamConflict, IpamLeak,
} from "../agent-api/schema.js";

export const RESULT_VERSION = "1.1.0";

/** The node's network policy, as the service needs it (src/policy-agent's controller in the agent). */
export interface PodPolicyHook {
  /** Resolves once the pod's isolation rules (and a further interface's sibling-source elements) are in the kernel. */
  podAdded(pod: LocalPod): Promise<void>;
  /** The host interface is gone: drop its rules. */
  podRemoved(hostIf: string): Promise<void>;
}

export interface AgentServiceOptions {
  node: string;
  /** The node's pod CIDRs; setNetwork() changes them (cluster mode learns them after start). */
  pools: Pool[];
  /** Pod MTU unless an AddRequest says otherwise. */
  mtu: number;
  store: IpamStore;
  kernel: PodKernel;
  log: Logger;
  /** Kernel operations in flight at once. */
  kernelConcurrency?: number;
  /**
   * Asked before every ADD: throws AgentFailure (code 11, try again later) while the agent cannot
   * place a pod (cluster store unreachable, not joined yet, lease lost).
   */
  admit?: (pod: PodRef | undefined) => Promise<void>;
  /** Why the agent cannot serve ADD now (for STATUS), or null when it can. */
  unavailable?: () => string | null;
  policy?: PodPolicyHook;
  /** Called after an ADD or DEL changed the set of wired pods. */
  onPodsChanged?: () => void;
}

/** The pod a CNI ADD is for, from CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME). */
export function podRefOf(args: Record<string, string>): PodRef | undefined {
  const namespace = args.K8S_POD_NAMESPACE;
  const name = args.K8S_POD_NAME;
  if (!namespace || !name) return undefined;
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace)) throw new AgentFailure(AgentCode.InvalidEnvironment, `K8S_POD_NAMESPACE "${namespace}" is not a Kubernetes namespace name`);
  if (name.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw new AgentFailure(AgentCode.InvalidEnvironment, `K8S_POD_NAME "${name}" is not a Kubernetes pod name`);
  return { namespace, name };
}

/** Who the policy sees: the Kubernetes pod, or (no K8S_POD_* args) the container under "_cni". */
export function policyIdentity(pod: PodRef | undefined, containerId: string): PodRef {
  return pod ?? { namespace: "_cni", name: containerId };
}

/** Every ready attachment as the policy controller's local pods (one per weft interface). */
export function localPodsOf(records: AttachmentRecord[]): LocalPod[] {
  return records.filter((r) => r.state === "ready").map(localPodOf);
}

function localPodOf(r: AttachmentRecord): LocalPod {
  // netns pairs a pod's interfaces before its veth exists, so a second interface's ADD waits
  // for its sibling anti-spoof elements.
  return { ...policyIdentity(r.pod, r.containerId), ifname: r.hostIf, ips: r.addresses.map((a) => a.address), netns: r.netns };
}

const lockKey = (containerId: string, ifname: string) => `${containerId}\0${ifname}`;

export class AgentService {
  private readonly locks = new KeyedMutex();
  private readonly kernelSlots: Semaphore;
  private readonly reaper: LinkReaper;
  private pools: Pool[];
  private mtu: number;
  constructor(private readonly o: AgentServiceOptions) {
    this.kernelSlots = new Semaphore(o.kernelConcurrency ?? 16);
    this.reaper = new LinkReaper(o.kernel);
    this.pools = o.pools;
    this.mtu = o.mtu;
  }

  /** New pod CIDRs / MTU for ADDs from now on (running pods keep theirs). */
  setNetwork(n: { pools: Pool[]; mtu: number }): void {
    this.pools = n.pools;
    this.mtu = n.mtu;
  }

  get network(): { pools: Pool[]; mtu: number } {
    return { pools: this.pools, mtu: this.mtu };
  }

  /** Attachments whose addresses lie outside the node's current pod CIDRs (a lost subnet). */
  strandedCount(): number {
    return this.o.store.list().filter((r) => !r.delegated && r.addresses.some((a) => !this.pools.some((p) => cidrHas(p, ipOrThrow(a.address))))).length;
  }

  podCount(): number {
    return this.o.store.list().filter((r) => r.state === "ready").length;
  }

  private async policyRemoved(hostIf: string): Promise<void> {
    if (!this.o.policy) return;
    await this.o.policy.podRemoved(hostIf).catch((e: unknown) => this.o.log.warn({ hostIf, err: String(e) }, "could not drop the policy entries of a removed pod; the next policy sync does"));
  }

  async handle(req: AgentRequest): Promise<AgentResponse> {
    try {
      switch (req.op) {
        case "add": return { ok: true, result: await this.add(req) };
        case "del": await this.del(req); return { ok: true };
        case "check": await this.check(req); return { ok: true };
        case "gc": await this.gc(req); return { ok: true };
        case "status": this.status(); return { ok: true };
        case "ipam-check": return { ok: true, report: await this.ipamCheck(req.fix === true) };
      }
    } catch (e) {
      return failureResponse(e);
    }
  }

  /** Undo what a crash left half-made; remove weft host links nobody owns. Never touches 'ready' pods. */
  async reconcile(): Promise<{ rolledBack: number; orphanLinks: number }> {
    const records = this.o.store.list();
    const adding = records.filter((r) => r.state === "adding");
    const owned = new Set(records.filter((r) => r.state === "ready").map((r) => r.hostIf));
    const links = (await this.o.kernel.hostLinks()).filter((l) => HOST_IF_PATTERN.test(l.name));
    const orphans = links.map((l) => l.name).filter((n) => !owned.has(n));
    // A half-made pod's host link is one of the orphans: one batch deletes them all.
    await this.o.kernel.deleteHostLinks(orphans);
    for (const r of adding) {
      this.o.store.release(r);
      this.o.log.warn({ containerId: r.containerId, ifname: r.ifname, addresses: r.addresses.map((a) => a.address) }, "rolled back an ADD interrupted by a restart");
    }
    const adoptedOrphans = orphans.filter((n) => !adding.some((r) => r.hostIf === n)).length;
    if (adoptedOrphans) this.o.log.warn({ links: adoptedOrphans }, "removed weft host links without an allocation");
    return { rolledBack: adding.length, orphanLinks: adoptedOrphans };
  }

  async add(req: AddRequest): Promise<Result> {
    const mtu = req.mtu ?? this.mtu;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new AgentFailure(AgentCode.InvalidConfig, `mtu ${mtu} is out of range (68-65535)`);
    const nsState = netnsFileState(req.netns);
    if (nsState === "missing") throw new AgentFailure(AgentCode.UnknownContainer, `network namespace ${req.netns} does not exist`);
    if (nsState === "not-a-namespace") throw new AgentFailure(AgentCode.InvalidEnvironment, `${req.netns} is not a network namespace file`);
    const delegated = req.ipam ? delegatedAddresses(req) : undefined;
    const pod = podRefOf(req.args);
    // Before any allocation: the pod's labels (policy) and this node's subnet come from the store.
    await this.o.admit?.(pod);
    const pools = this.pools;
    if (!delegated && pools.length === 0) throw new AgentFailure(AgentCode.TryAgainLater, "this node has no pod CIDR yet; try again later");
    return this.locks.run(lockKey(req.containerId, req.ifname), async () => {
      const hostIf = hostIfName(req.containerId, req.ifname);
      let rec: AttachmentRecord;
      try {
        rec = this.o.store.reserve({
          network: req.network, containerId: req.containerId, ifname: req.ifname, netns: req.netns, hostIf, mtu,
          hostMac: randomMac(), podMac: randomMac(),
          pools: delegated ? null : pools,
          ...(delegated ? { delegated: delegated.addresses } : {}),
          ...(pod ? { pod } : {}),
        });
      } catch (e) {
        if (e instanceof IpamError) {
          const code = e.kind === "exists" ? AgentCode.AlreadyExists : e.kind === "exhausted" ? AgentCode.AddressesExhausted : AgentCode.AddressConflict;
          throw new AgentFailure(code, e.message);
        }
        throw e;
      }
      const extraRoutes = delegated?.routes ?? [];
      const t0 = performance.now();
      try {
        // The pod's isolation rules (and, for a pod's further interface, the elements that let its
        // veths carry each other's addresses) are committed before its veth exists, so its first
        // packet already meets them. Anti-spoofing itself is one rule with no per-pod entry.
        if (this.o.policy) {
          try {
            await this.o.policy.podAdded(localPodOf(rec));
          } catch (e) {
            throw new AgentFailure(AgentCode.TryAgainLater, `network policy for the pod could not be applied: ${e instanceof Error ? e.message : String(e)}; try again later`);
          }
        }
        const wired = await this.kernelSlots.run(() =>
          this.o.kernel.wirePod({
            hostIf, hostMac: rec.hostMac, podIf: req.ifname, podMac: rec.podMac, netns: req.netns, mtu,
            addresses: rec.addresses, extraRoutes,
          }),
        );
        this.o.store.markReady(rec, wired.defaultRoutes);
        rec.defaultRoutes = wired.defaultRoutes;
      } catch (e) {
        // Leave nothing behind: the host end takes the pod end with it; then release the addresses.
        const undo = await this.o.kernel.deleteHostLinks([hostIf]).then(() => undefined, (u: unknown) => u);
        this.o.store.release(rec);
        await this.policyRemoved(hostIf);
        if (undo) this.o.log.error({ err: undo, hostIf }, "could not remove the host veth of a failed ADD");
        if (e instanceof KernelCommandError && /File exists/.test(e.stderr)
            && (await this.o.kernel.linkExistsIn(req.netns, req.ifname).catch(() => false))) {
          throw new AgentFailure(AgentCode.AlreadyExists, `interface ${req.ifname} already exists in ${req.netns}`);
        }
        throw e;
      }
      this.o.onPodsChanged?.();
      this.o.log.info({ containerId: req.containerId, ifname: req.ifname, hostIf, ...(pod ? { pod: `${pod.namespace}/${pod.name}` } : {}), addresses: rec.addresses.map((a) => a.address), ms: +(performance.now() - t0).toFixed(1) }, "pod added");
      return buildResult(rec, extraRoutes);
    });
  }

  async del(req: DelRequest): Promise<void> {
    await this.locks.run(lockKey(req.containerId, req.ifname), async () => {
      const rec = this.o.store.get(req);
      const hostIf = rec?.hostIf ?? hostIfName(req.containerId, req.ifname);
      // The same (containerId, ifname) attached by another network: its link is not ours to remove.
      const other = rec ? undefined : this.o.store.findAttachment(req.containerId, req.ifname);
      if (other) {
        this.o.log.warn({ containerId: req.containerId, ifname: req.ifname, network: req.network, owner: other.network }, "DEL for an interface another network attached; left alone");
        return;
      }
      await this.reaper.delete(hostIf);
      // Delegated addresses are only forgotten here; their IPAM plugin releases them.
      if (rec) this.o.store.release(rec);
      // The veth is gone (no more packets), so its rules can go.
      await this.policyRemoved(hostIf);
      if (rec) this.o.onPodsChanged?.();
      this.o.log.info({ containerId: req.containerId, ifname: req.ifname, hostIf, known: !!rec }, "pod deleted");
    });
  }

  async check(req: CheckRequest): Promise<void> {
    const fail = (msg: string) => { throw new AgentFailure(AgentCode.CheckFailed, msg); };
    await this.locks.run(lockKey(req.containerId, req.ifname), async () => {
      const rec = this.o.store.get(req);
      if (!rec) fail(`no allocation for container ${req.containerId} interface ${req.ifname} in network ${req.network}`);
      if (rec!.state !== "ready") fail(`the ADD of container ${req.containerId} interface ${req.ifname} has not finished`);
      if (!existsSync(req.netns)) throw new AgentFailure(AgentCode.UnknownContainer, `network namespace ${req.netns} does not exist`);
      const want = rec!.addresses.map((a) => `${a.address}/${a.prefix}`);
      // Only the prevResult addresses on this pod interface are weft's (a chain may add others).
      const podIdx = (req.prevResult?.interfaces ?? []).findIndex((i) => i.name === req.ifname && i.sandbox);
      const ours = (req.prevResult?.ips ?? []).filter((ip) => podIdx < 0 || ip.interface === undefined || ip.interface === podIdx);
      for (const ip of ours) {
        const [addr] = ip.address.split("/");
        if (!rec!.addresses.some((a) => a.address === safeCanonical(addr))) fail(`prevResult address ${ip.address} is not allocated to this pod`);
      }
      const pod = await this.o.kernel.inspectPod(req.netns, req.ifname);
      if (!pod) return fail(`interface ${req.ifname} is missing in ${req.netns}`);
      if (!pod.link.up) fail(`interface ${req.ifname} in ${req.netns} is down`);
      const have = new Set(pod.addresses.map((a) => { const [x, p] = a.split("/"); return `${safeCanonical(x)}/${p}`; }));
      for (const w of want) if (!have.has(w)) fail(`address ${w} is missing on ${req.ifname} in ${req.netns}`);
      for (const fam of rec!.defaultRoutes) {
        const dst = fam === 4 ? "0.0.0.0/0" : "::/0";
        const gw = fam === 4 ? GATEWAY_V4 : GATEWAY_V6;
        if (!pod.routes.some((r) => r.dst === dst && r.gateway === gw)) fail(`default route via ${gw} is missing on ${req.ifname} in ${req.netns}`);
      }
      const hostLinks = await this.o.kernel.hostLinks();
      if (!hostLinks.some((l) => l.name === rec!.hostIf)) fail(`host veth ${rec!.hostIf} is missing`);
      const routes = await this.o.kernel.hostRoutes();
      for (const a of rec!.addresses) {
        const dst = `${a.address}/${a.family === 4 ? 32 : 128}`;
        if (!routes.some((r) => r.dst === dst && r.dev === rec!.hostIf)) fail(`host route ${dst} dev ${rec!.hostIf} is missing`);
      }
    });
  }

  async gc(req: GcRequest): Promise<void> {
    const valid = new Set(req.validAttachments.map((a) => lockKey(a.containerID, a.ifname)));
    const stale = this.o.store.list(req.network).filter((r) => !valid.has(lockKey(r.containerId, r.ifname)));
    // Each stale attachment under its own lock, so GC never races an ADD or DEL of the same pod;
    // the links of all of them go in one batch.
    let released = 0;
    await holdAll(this.locks, stale.map((r) => lockKey(r.containerId, r.ifname)), async () => {
      const still = stale.filter((r) => this.o.store.get(r));
      await this.kernelSlots.run(() => this.o.kernel.deleteHostLinks(still.map((r) => r.hostIf)));
      for (const r of still) if (this.o.store.release(r)) released++;
      for (const r of still) await this.policyRemoved(r.hostIf);
    });
    if (released) this.o.onPodsChanged?.();
    this.o.log.info({ network: req.network, released }, "gc");
  }

  status(): void {
    const why = this.o.unavailable?.();
    if (why) throw new AgentFailure(AgentCode.PluginNotAvailable, why);
    if (!this.o.store.healthy()) throw new AgentFailure(AgentCode.PluginNotAvailable, "the agent's allocation store is not readable");
    const records = this.o.store.list().filter((r) => !r.delegated);
    for (const pool of this.pools) {
      const { first, last } = usableRange(pool);
      const used = records.flatMap((r) => r.addresses).filter((a) => cidrHas(pool, ipOrThrow(a.address))).length;
      if (BigInt(used) > last - first) throw new AgentFailure(AgentCode.PluginNotAvailable, `pod CIDR ${pool.cidr} has no free address`);
    }
  }

  async ipamCheck(fix: boolean): Promise<IpamCheckReport> {
    const found = await this.inspectAllocations();
    if (!fix || (found.leaked.length === 0 && found.conflicts.length === 0)) return found;
    const fixed: string[] = [];
    // Each repair re-checks under the attachment's lock: an ADD or DEL may have finished since.
    const releaseRecord = async (key: AttachmentKey, why: string, onlyIfBroken: boolean) => {
      await this.locks.run(lockKey(key.containerId, key.ifname), async () => {
        const rec = this.o.store.get(key);
        if (!rec) return;
        if (onlyIfBroken && rec.state === "ready") {
          const present = (await this.o.kernel.hostLinks()).some((l) => l.name === rec.hostIf);
          if (present && existsSync(rec.netns)) return;
        }
        await this.o.kernel.deleteHostLinks([rec.hostIf]);
        if (this.o.store.release(key)) fixed.push(`released ${key.containerId}/${key.ifname} (${why})`);
        await this.policyRemoved(rec.hostIf);
      });
    };
    for (const l of found.leaked) {
      if (l.kind === "allocation") await releaseRecord(l as Required<IpamLeak>, l.reason, true);
      else if (!this.o.store.list().some((r) => r.hostIf === l.hostIf)) {
        // ADD records its allocation before it makes the link, so an unowned link is an orphan.
        await this.o.kernel.deleteHostLinks([l.hostIf]);
        fixed.push(`deleted link ${l.hostIf} (${l.reason})`);
      }
    }
    for (const c of found.conflicts) {
      if (c.containerId && c.ifname && c.network && /outside/.test(c.reason)) {
        await releaseRecord(c as Required<IpamConflict>, c.reason, false);
      } else if (c.devices) {
        const owner = this.o.store.list().find((r) => r.addresses.some((a) => a.address === c.address));
        const dst = `${c.address}/${c.address.includes(":") ? 128 : 32}`;
        for (const dev of c.devices.filter((d) => d !== owner?.hostIf)) {
          await this.o.kernel.deleteHostRoute({ dst, dev }).catch(() => undefined);
          fixed.push(`deleted route ${dst} dev ${dev}`);
        }
      }
    }
    return { ...(await this.inspectAllocations()), fixed };
  }

  private async inspectAllocations(): Promise<IpamCheckReport> {
    // Kernel first, records second: ADD writes its record before it makes links, so a link
    // seen here without a record really has no owner.
    const links = new Set((await this.o.kernel.hostLinks()).map((l) => l.name));
    const routes = await this.o.kernel.hostRoutes();
    const records = this.o.store.list();
    const busy = (r: AttachmentRecord) => this.locks.isLocked(lockKey(r.containerId, r.ifname));
    const leaked: IpamLeak[] = [];
    const conflicts: IpamConflict[] = [];
    const owner = (r: AttachmentRecord) => ({ network: r.network, containerId: r.containerId, ifname: r.ifname });
    for (const r of records) {
      if (busy(r)) continue; // an operation on it is in flight
      const addresses = r.addresses.map((a) => a.address);
      if (r.state === "adding") leaked.push({ kind: "allocation", hostIf: r.hostIf, ...owner(r), addresses, reason: "its ADD never finished" });
      else if (!links.has(r.hostIf)) leaked.push({ kind: "allocation", hostIf: r.hostIf, ...owner(r), addresses, reason: `host veth ${r.hostIf} is gone (pod or its namespace removed without DEL)` });
      else if (!existsSync(r.netns)) leaked.push({ kind: "allocation", hostIf: r.hostIf, ...owner(r), addresses, reason: `network namespace ${r.netns} is gone` });
      for (const a of r.addresses) {
        if (!r.delegated && !this.pools.some((p) => cidrHas(p, ipOrThrow(a.address)))) {
          conflicts.push({ address: a.address, ...owner(r), reason: `outside this node's pod CIDRs (${this.pools.map((p) => p.cidr).join(", ")})` });
        }
      }
    }
    const owned = new Set(records.map((r) => r.hostIf));
    for (const name of links) {
      if (HOST_IF_PATTERN.test(name) && !owned.has(name)) leaked.push({ kind: "link", hostIf: name, reason: "weft host veth without an allocation" });
    }
    // Host routes to single addresses: an allocated address must be routed only via its own veth.
    const byAddr = new Map<string, string[]>();
    for (const rt of routes) {
      const m = /^(.+)\/(32|128)$/.exec(rt.dst);
      if (!m || rt.gateway) continue;
      const a = safeCanonical(m[1]);
      byAddr.set(a, [...(byAddr.get(a) ?? []), rt.dev]);
    }
    for (const r of records) {
      if (busy(r)) continue;
      for (const a of r.addresses) {
        const devs = byAddr.get(a.address) ?? [];
        if (devs.length > 1 || (devs.length === 1 && devs[0] !== r.hostIf)) {
          conflicts.push({ address: a.address, ...owner(r), devices: devs, reason: `routed via ${devs.join(", ")}; allocated to ${r.hostIf}` });
        }
      }
    }
    // Weft links routing an address that isn't theirs (e.g. a leftover from an old pod).
    for (const [a, devs] of byAddr) {
      if (records.some((r) => r.addresses.some((x) => x.address === a))) continue;
      const weftDevs = devs.filter((d) => HOST_IF_PATTERN.test(d));
      if (weftDevs.length > 1) conflicts.push({ address: a, devices: weftDevs, reason: `routed via ${weftDevs.join(", ")} without an allocation` });
    }
    return { allocations: records.reduce((n, r) => n + r.addresses.length, 0), leaked, conflicts };
  }
}

/** Runs fn holding every key's lock (taken in sorted order, so two callers cannot deadlock). */
function holdAll(locks: KeyedMutex, keys: string[], fn: () => Promise<void>): Promise<void> {
  const sorted = [...new Set(keys)].sort();
  const step = (i: number): Promise<void> => (i === sorted.length ? fn() : locks.run(sorted[i], () => step(i + 1)));
  return step(0);
}

function safeCanonical(a: string): string {
  return canonicalIp(a) ?? a;
}

function delegatedAddresses(req: AddRequest): { addresses: { family: Family; address: string; prefix: number }[]; routes: PodRoute[] } {
  const ips = req.ipam?.ips ?? [];
  if (ips.length === 0) throw new AgentFailure(AgentCode.InvalidConfig, "delegated IPAM gave no addresses");
  const addresses = ips.map((ip) => {
    const [addr] = ip.address.split("/");
    const parsed = parseIp(addr);
    if (!parsed) throw new AgentFailure(AgentCode.InvalidConfig, `delegated IPAM address "${ip.address}" is not an IP address`);
    // Routed design: the pod holds its address alone, whatever subnet the IPAM plugin used.
    return { family: parsed.family, address: formatIp(parsed.family, parsed.value), prefix: parsed.family === 4 ? 32 : 128 };
  });
  const routes: PodRoute[] = [];
  for (const r of req.ipam?.routes ?? []) {
    const [a, len] = r.dst.split("/");
    const fam: Family | undefined = parseIp(a)?.family;
    if (fam === undefined) throw new AgentFailure(AgentCode.InvalidConfig, `delegated route "${r.dst}" is not a CIDR`);
    if (Number(len) === 0) continue; // default routes are always via weft's gateway
    routes.push({ dst: r.dst, family: fam });
  }
  return { addresses, routes };
}

export function buildResult(rec: AttachmentRecord, extraRoutes: PodRoute[] = []): Result {
  // Default routes only for the families this interface carries them for (see PodKernel.wirePod).
  const fams = new Set(rec.defaultRoutes);
  const gw = (f: Family) => (f === 4 ? GATEWAY_V4 : GATEWAY_V6);
  const routes: Route[] = [];
  if (fams.has(4)) routes.push({ dst: "0.0.0.0/0", gw: GATEWAY_V4 });
  if (fams.has(6)) routes.push({ dst: "::/0", gw: GATEWAY_V6 });
  for (const r of extraRoutes) routes.push({ dst: r.dst, gw: gw(r.family) });
  return {
    cniVersion: RESULT_VERSION,
    interfaces: [
      { name: rec.hostIf, mac: rec.hostMac, mtu: rec.mtu },
      { name: rec.ifname, mac: rec.podMac, mtu: rec.mtu, sandbox: rec.netns },
    ],
    ips: rec.addresses.map((a) => ({ address: `${a.address}/${a.prefix}`, gateway: gw(a.family), interface: 1 })),
    routes,
  };
}

export function failureResponse(e: unknown): AgentResponse {
  if (e instanceof AgentFailure) return { ok: false, code: e.code, msg: e.message, ...(e.details ? { details: e.details } : {}) };
  if (e instanceof InvalidKernelInput) return { ok: false, code: AgentCode.InvalidEnvironment, msg: e.message };
  if (e instanceof KernelCommandError) return { ok: false, code: AgentCode.KernelFailure, msg: `kernel: ${e.stderr.trim().split("\n")[0] || "command failed"}`, details: e.message };
  const msg = e instanceof Error ? e.message : String(e);
  return { ok: false, code: AgentCode.Internal, msg };
}
