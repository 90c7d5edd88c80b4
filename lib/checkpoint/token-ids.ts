// Token ids from outside the library are checked, never coerced: Int32Array.from would turn a
// string into 0, 1.5 into 1 and 2^32 + 5 into 5 and hand the model a different prompt.
import { show } from "../common/validate";

/**
 * Checks that `ids` is an array of integers in [0, limit) and returns it.
 * @example checkTokenIds([1, 2, 3], config.vocabSize, "prefill: ids");
 */
export function checkTokenIds(ids: unknown, limit: number, what: string): readonly number[] {
  if (!Array.isArray(ids) && !(ArrayBuffer.isView(ids) && !(ids instanceof DataView)))
    throw new TypeError(`${what} must be an array of token ids, got ${show(ids)}`);
  const list = ids as ArrayLike<unknown>;
  for (let i = 0; i < list.length; i++) {
    const id = list[i];
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= limit)
      throw new RangeError(`${what}[${i}] is ${show(id)}: token ids must be integers in [0, ${limit - 1}]`);
  }
  return list as readonly number[];
}
