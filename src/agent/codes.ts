// Error codes the agent answers with. 0-99 are the CNI spec's; 100+ are weft's own.
import { CniErrorCode } from "../cni/types.js";

export const AgentCode = {
  ...CniErrorCode,
  /** ADD for a (containerId, ifname) that already has an attachment, or an interface that exists. */
  AlreadyExists: 100,
  /** The node's pod CIDR has no free address. */
  AddressesExhausted: 101,
  /** A kernel tool failed; details carry what it said. */
  KernelFailure: 102,
  /** CHECK found the pod's networking differs from what was set up. */
  CheckFailed: 103,
  /** A delegated address is already used on this node. */
  AddressConflict: 104,
  /** Anything else. */
  Internal: 199,
} as const;

/** A failure with a CNI error code and a message a person can act on. */
export class AgentFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details?: string,
  ) {
    super(message);
    this.name = "AgentFailure";
  }
}
