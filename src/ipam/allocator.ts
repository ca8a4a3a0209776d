// The allocation policy, free of storage: the next free address after the last one handed out,
// wrapping around, so a released address is not handed out again right away.
import { type Pool, usableRange } from "./pool.js";

/**
 * The next address in `pool` after `last` (or from the start) for which `isUsed` is false, or null
 * when the pool is full. `isUsed` is asked at most once per usable address.
 */
export function nextFree(pool: Pool, last: bigint | null, isUsed: (value: bigint) => boolean): bigint | null {
  const { first, last: top } = usableRange(pool);
  let cur = last === null || last < first || last >= top ? first : last + 1n;
  const size = top - first + 1n;
  for (let n = 0n; n < size; n++) {
    if (!isUsed(cur)) return cur;
    cur = cur >= top ? first : cur + 1n;
  }
  return null;
}
