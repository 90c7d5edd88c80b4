// The KV page pool of one device (DESIGN.md section 4): two tensors [numPages, pageSize, hkv, d]
// (K and V) shared by every layer of every sequence, and the bookkeeping of which pages are free.
// A page holds pageSize tokens of one layer; pages come back the moment a cache lets them go.

import { pageBytes } from "../common/geometry";
import { type DeviceName, type DType, dtypeBytes, Tensor } from "../runtime/tensor";

export interface PagePoolOptions {
  numPages: number;
  pageSize: number;
  kvHeads: number;
  headDim: number;
  dtype: DType;
  device: DeviceName;
}

/**
 * Raised when a sequence needs more pages than are free.
 * @example
 * try {
 *   results = await model.generateBatch(prompts, { maxNewTokens: 256 });
 * } catch (err) {
 *   if (!(err instanceof PoolExhaustedError)) throw err;
 *   results = []; // the batch does not fit the pool: one prompt at a time
 *   for (const p of prompts) results.push(...(await model.generateBatch([p], { maxNewTokens: 256 })));
 * }
 */
export class PoolExhaustedError extends Error {
  /**
   * `wanted` pages asked for when `free` of the pool's `total` were free; `needer` names what needs
   * more than the whole pool ("the prompt (5000 tokens)"), which no wait for free pages would help.
   * @example const fullModel = { generateBatch: async () => { throw new PoolExhaustedError(4, 0, 1024); } }; // tests the class example's fallback without filling a pool
   */
  constructor(wanted: number, free: number, total: number, needer?: string) {
    super(
      (needer
        ? `the KV page pool is too small: ${needer} needs ${wanted} pages while it is prefilled, and the pool holds ${total} in all. `
        : `the KV page pool is full: ${wanted} page(s) wanted, ${free} of ${total} free. `) +
        "Use a shorter prompt, a smaller batch or maxContext, more lazy layers (createSession({ hybrid })), " +
        "or a larger pool (loadModel(dir, { kvCacheBytes }))",
    );
    this.name = "PoolExhaustedError";
  }
}

/** Page ids and pool slots (page · pageSize + offset) are int32 in the kernels. */
export const maxPoolSlots = 2 ** 31 - 1;

/**
 * The KV page pool a model's sessions share: one K and one V tensor of `numPages` pages, handed out
 * a page at a time.
 * @example console.log(`${model.pool.freePages} of ${model.pool.numPages} pages free`);
 */
export class PagePool {
  readonly kPages: Tensor;
  readonly vPages: Tensor;
  readonly numPages: number;
  readonly pageSize: number;
  /** Bytes of one page (K and V together). */
  readonly pageBytes: number;
  /** A stack of free page ids in free[0, freeCount): 4 bytes a page, off the JS heap. */
  private readonly free: Int32Array;
  private freeCount: number;
  private highWater = 0;

  constructor(o: PagePoolOptions) {
    if (!Number.isInteger(o.pageSize) || o.pageSize < 1) throw new RangeError(`pageSize must be an integer >= 1, got ${o.pageSize}`);
    const maxPages = Math.floor(maxPoolSlots / o.pageSize);
    if (!Number.isInteger(o.numPages) || o.numPages < 1 || o.numPages > maxPages)
      throw new RangeError(
        `numPages must be an integer in [1, ${maxPages}] (pool slots are int32), got ${o.numPages}: ask for fewer kvCacheBytes`,
      );
    const shape = [o.numPages, o.pageSize, o.kvHeads, o.headDim];
    this.kPages = Tensor.empty(shape, o.dtype, o.device);
    try {
      this.vPages = Tensor.empty(shape, o.dtype, o.device);
    } catch (err) {
      this.kPages.dispose();
      throw err;
    }
    this.numPages = o.numPages;
    this.pageSize = o.pageSize;
    this.pageBytes = pageBytes({ pageSize: o.pageSize, kvHeads: o.kvHeads, headDim: o.headDim, elementBytes: dtypeBytes(o.dtype) });
    // Popped from the end: low page numbers go out first, which keeps tests readable.
    this.free = new Int32Array(o.numPages);
    for (let i = 0; i < o.numPages; i++) this.free[i] = o.numPages - 1 - i;
    this.freeCount = o.numPages;
  }

  get freePages(): number {
    return this.freeCount;
  }

  get usedPages(): number {
    return this.numPages - this.freeCount;
  }

  /** The most pages ever in use at once since creation (or the last resetHighWater). */
  get highWaterPages(): number {
    return this.highWater;
  }

  resetHighWater(): void {
    this.highWater = this.usedPages;
  }

  allocate(count: number): number[] {
    if (count > this.freeCount) throw new PoolExhaustedError(count, this.freeCount, this.numPages);
    const pages = Array.from(this.free.subarray(this.freeCount - count, this.freeCount)).reverse();
    this.freeCount -= count;
    this.highWater = Math.max(this.highWater, this.usedPages);
    return pages;
  }

  release(pages: readonly number[]): void {
    if (this.freeCount + pages.length > this.numPages)
      throw new Error(`internal: ${pages.length} page(s) released into a pool with ${this.numPages - this.freeCount} in use`);
    for (let i = pages.length - 1; i >= 0; i--) this.free[this.freeCount++] = pages[i];
  }

  dispose(): void {
    this.kPages.dispose();
    this.vPages.dispose();
  }
}
