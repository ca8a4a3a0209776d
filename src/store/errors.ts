// Typed store errors. Every implementation throws only these (plus programming errors), so callers
// can branch on `code` without knowing which store is behind the interface.

export type StoreErrorCode = "NotFound" | "Conflict" | "Unavailable" | "Invalid" | "Exhausted";

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = `Store${code}Error`;
  }
}

/** The object, node or setting does not exist. */
export class NotFoundError extends StoreError {
  constructor(message: string) {
    super("NotFound", message);
  }
}

/** `weft cluster init` has not been run against this store yet. */
export class NotInitializedError extends NotFoundError {
  constructor(where: string) {
    super(
      `the cluster in ${where} is not initialized: run \`weft cluster init --cluster-cidr CIDR[,CIDR] --backend vxlan|host-gw|vxlan-direct\` first`,
    );
  }
}

export type ConflictReason = "AlreadyExists" | "ResourceVersion" | "AlreadyInitialized" | "Contention";

/** A precondition failed: the thing exists already, or changed since it was read. */
export class ConflictError extends StoreError {
  constructor(
    readonly reason: ConflictReason,
    message: string,
  ) {
    super("Conflict", message);
  }
}

/** The backing store cannot be reached (etcd down, SQLite file locked, ...). Retrying later may work. */
export class UnavailableError extends StoreError {
  constructor(message: string, cause?: unknown) {
    super("Unavailable", message, { cause });
  }
}

/** The input is malformed (bad CIDR, missing name, ...). */
export class InvalidError extends StoreError {
  constructor(message: string) {
    super("Invalid", message);
  }
}

/** No free node subnet is left in a cluster CIDR. */
export class ExhaustedError extends StoreError {
  constructor(message: string) {
    super("Exhausted", message);
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}
