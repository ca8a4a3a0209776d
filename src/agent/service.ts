// The agent's operations over the IPAM store and the kernel, one module per operation under
// ops/ (add, del, check, gc, status, reconcile, ipam-check), composed here. Every attachment is
// recorded as 'adding' before the kernel is touched and as 'ready' after, so reconcile() can
// undo half-made pods after a crash without touching finished ones.
import type { Result } from "../cni/types.js";
import type { Pool } from "../ipam/pool.js";
import { cidrHas } from "../net/cidr.js";
import { ipOrThrow } from "../net/ip.js";
import { KernelCommandError } from "../kernel/exec.js";
import { InvalidKernelInput } from "../kernel/validate.js";
import { AgentCode, AgentFailure } from "./codes.js";
import { KeyedMutex, Semaphore } from "./locks.js";
import { cmdAdd } from "./ops/add.js";
import { cmdCheck } from "./ops/check.js";
import type { AgentServiceOptions, OpContext } from "./ops/context.js";
import { cmdDel } from "./ops/del.js";
import { cmdGc } from "./ops/gc.js";
import { ipamCheck } from "./ops/ipam-check.js";
import { reconcile } from "./ops/reconcile.js";
import { cmdStatus } from "./ops/status.js";
import type {
  AddRequest,
  AgentRequest,
  AgentResponse,
  CheckRequest,
  DelRequest,
  GcRequest,
  IpamCheckReport,
} from "../agent-api/schema.js";
import { LinkReaper } from "./reaper.js";

export type { AgentServiceOptions, PodPolicyHook } from "./ops/context.js";
export { buildResult, localPodsOf, podRefOf, policyIdentity, RESULT_VERSION } from "./ops/pods.js";

export class AgentService {
  private readonly ctx: OpContext;
  private pools: Pool[];
  private mtu: number;
  constructor(private readonly o: AgentServiceOptions) {
    this.pools = o.pools;
    this.mtu = o.mtu;
    this.ctx = {
      o,
      locks: new KeyedMutex(),
      kernelSlots: new Semaphore(o.kernelConcurrency ?? 16),
      reaper: new LinkReaper(o.kernel),
      network: () => this.network,
      policyRemoved: async (hostIf) => {
        if (!o.policy) return;
        await o.policy
          .podRemoved(hostIf)
          .catch((e: unknown) =>
            o.log.warn(
              { hostIf, err: String(e) },
              "could not drop the policy entries of a removed pod; the next policy sync does",
            ),
          );
      },
    };
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
    return this.o.store
      .list()
      .filter((r) => !r.delegated && r.addresses.some((a) => !this.pools.some((p) => cidrHas(p, ipOrThrow(a.address)))))
      .length;
  }

  podCount(): number {
    return this.o.store.list().filter((r) => r.state === "ready").length;
  }

  async handle(req: AgentRequest): Promise<AgentResponse> {
    try {
      switch (req.op) {
        case "add":
          return { ok: true, result: await this.add(req) };
        case "del":
          await this.del(req);
          return { ok: true };
        case "check":
          await this.check(req);
          return { ok: true };
        case "gc":
          await this.gc(req);
          return { ok: true };
        case "status":
          this.status();
          return { ok: true };
        case "ipam-check":
          return { ok: true, report: await this.ipamCheck(req.fix === true) };
      }
    } catch (e) {
      return failureResponse(e);
    }
  }

  /** Undo what a crash left half-made; remove weft host links nobody owns. Never touches 'ready' pods. */
  reconcile(): Promise<{ rolledBack: number; orphanLinks: number }> {
    return reconcile(this.ctx);
  }
  add(req: AddRequest): Promise<Result> {
    return cmdAdd(this.ctx, req);
  }
  del(req: DelRequest): Promise<void> {
    return cmdDel(this.ctx, req);
  }
  check(req: CheckRequest): Promise<void> {
    return cmdCheck(this.ctx, req);
  }
  gc(req: GcRequest): Promise<void> {
    return cmdGc(this.ctx, req);
  }
  status(): void {
    cmdStatus(this.ctx);
  }
  ipamCheck(fix: boolean): Promise<IpamCheckReport> {
    return ipamCheck(this.ctx, fix);
  }
}

export function failureResponse(e: unknown): AgentResponse {
  if (e instanceof AgentFailure)
    return { ok: false, code: e.code, msg: e.message, ...(e.details ? { details: e.details } : {}) };
  if (e instanceof InvalidKernelInput) return { ok: false, code: AgentCode.InvalidEnvironment, msg: e.message };
  if (e instanceof KernelCommandError)
    return {
      ok: false,
      code: AgentCode.KernelFailure,
      msg: `kernel: ${e.stderr.trim().split("\n")[0] || "command failed"}`,
      details: e.message,
    };
  const msg = e instanceof Error ? e.message : String(e);
  return { ok: false, code: AgentCode.Internal, msg };
}
