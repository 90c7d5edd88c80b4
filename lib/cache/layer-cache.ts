// Per-(sequence, layer) caches over the page pool. A full cache grows a page at a time; a
// streaming cache is a fixed ring of ceil((sink + window) / pageSize) pages where token p sits
// at slot p if p < sink, else sink + (p - sink) mod window (DESIGN.md section 2). The arithmetic
// of both is lib/common/geometry.ts.

import { heldSlots, pagesAfterAppend, poolSlot, type RingShape, ringPages, ringSize, ringSlot } from "../common/geometry";
import * as kernels from "../kernels";
import { Tensor } from "../runtime/tensor";
import type { PagePool } from "./page-pool";

abstract class PagedCache {
  /** Tokens written so far (the logical length, also for a ring). */
  length = 0;
  protected pages: number[] = [];

  constructor(protected readonly pool: PagePool) {}

  /** Slots attention reads: [0, validSlots). */
  abstract get validSlots(): number;
  /** Pool slot (page · pageSize + offset) for position `p`, allocating pages as needed. */
  protected abstract slotFor(p: number): number;

  /**
   * The cache's pages in slot order. The array only ever grows by appending; whatever drops or
   * replaces pages assigns a new array. The CUDA decode step relies on this to re-upload a
   * table only when it changed (model/decode-graph.ts).
   */
  get pageTable(): readonly number[] {
    return this.pages;
  }

  get bytes(): number {
    return this.pages.length * this.pool.pageBytes;
  }

  /**
   * Pool slots of the next `count` tokens; advances the length. When a ring wraps within one
   * call, the earlier token of a shared slot gets -1 (appendKv skips it), so the last one wins.
   */
  reserve(count: number): number[] {
    const slots: number[] = [];
    for (let i = 0; i < count; i++) slots.push(this.slotFor(this.length + i));
    this.length += count;
    const taken = new Set<number>();
    for (let i = count - 1; i >= 0; i--) {
      if (taken.has(slots[i])) slots[i] = -1;
      else taken.add(slots[i]);
    }
    return slots;
  }

  /**
   * The pool slot of the next token; advances the length. The one-token case of `reserve`,
   * without its arrays, because a decode step calls it for every layer of every sequence.
   */
  reserveOne(): number {
    return this.slotFor(this.length++);
  }

  /** How many pages the table will hold once `count` more tokens are reserved. */
  abstract pageCountAfter(count: number): number;

  /** Pool slot holding position `p` (which must still be cached). */
  abstract slotOfPosition(p: number): number;

  release(): void {
    this.pool.release(this.pages);
    this.pages = [];
  }

  /**
   * Goes back to an earlier state of this cache: `length` tokens on its first `pageCount` pages
   * (later pages go back to the pool). Used to undo a prefill or a decode step that failed
   * part-way; slots a ring overwrote are the caller's to restore where anything may read them.
   */
  rollBack(length: number, pageCount: number): void {
    if (pageCount < this.pages.length) {
      this.pool.release(this.pages.slice(pageCount));
      this.pages = this.pages.slice(0, pageCount);
    }
    this.length = length;
  }

  protected slotOf(table: readonly number[], s: number): number {
    return poolSlot(table, s, this.pool.pageSize);
  }
}

export class FullCache extends PagedCache {
  readonly kind = "full";

  get validSlots(): number {
    return this.length;
  }

  pageCountAfter(count: number): number {
    return pagesAfterAppend({ pages: this.pages.length, length: this.length, count, pageSize: this.pool.pageSize });
  }

  slotOfPosition(p: number): number {
    if (p < 0 || p >= this.length) throw new RangeError(`position ${p} is not in this cache of ${this.length} tokens`);
    return this.slotOf(this.pages, p);
  }

  protected slotFor(p: number): number {
    const page = Math.floor(p / this.pool.pageSize);
    if (page >= this.pages.length) for (const p of this.pool.allocate(page + 1 - this.pages.length)) this.pages.push(p);
    return this.slotOf(this.pages, p);
  }

  /**
   * Turns this full cache into a streaming ring in place: keeps the sinks and the last `window`
   * tokens on its own first pages and gives every other page back to the pool at once.
   */
  cutToStreaming(sink: number, window: number): StreamingCache {
    const ring = new StreamingCache(this.pool, sink, window);
    const keptPages = ringPages(this.length, ring, this.pool.pageSize);
    if (this.length > 0) {
      const { device } = this.pool.kPages;
      const src = Tensor.from(Int32Array.from(this.pages), [this.pages.length], { device });
      let dst: Tensor | undefined;
      try {
        dst = Tensor.from(Int32Array.from(this.pages.slice(0, Math.max(keptPages, 1))), [Math.max(keptPages, 1)], { device });
        kernels.cutToStreaming({
          kPages: this.pool.kPages,
          vPages: this.pool.vPages,
          srcPageTable: src,
          dstPageTable: dst,
          length: this.length,
          sink,
          window,
        });
      } finally {
        src.dispose();
        dst?.dispose();
      }
    }
    ring.adopt(this.pages.slice(0, keptPages), this.length);
    this.pool.release(this.pages.slice(keptPages));
    this.pages = [];
    this.length = 0;
    return ring;
  }
}

export class StreamingCache extends PagedCache implements RingShape {
  readonly kind = "streaming";

  constructor(
    pool: PagePool,
    readonly sink: number,
    readonly window: number,
  ) {
    super(pool);
    if (!Number.isInteger(sink) || sink < 0) throw new RangeError(`sink must be an integer >= 0, got ${sink}`);
    if (!Number.isInteger(window) || window < 1) throw new RangeError(`window must be an integer >= 1, got ${window}`);
  }

  get capacity(): number {
    return ringSize(this);
  }

  get validSlots(): number {
    return heldSlots(this.length, this);
  }

  /** @internal takes over pages that already hold a ring of `length` tokens. */
  adopt(pages: number[], length: number): void {
    this.pages = pages;
    this.length = length;
  }

  pageCountAfter(count: number): number {
    return pagesAfterAppend({ pages: this.pages.length, length: this.length, count, pageSize: this.pool.pageSize, ring: this });
  }

  slotOfPosition(p: number): number {
    const kept = p >= 0 && p < this.length && (p < this.sink || p >= this.length - this.window);
    if (!kept) throw new RangeError(`position ${p} is not in this ring (sink ${this.sink}, window ${this.window}, length ${this.length})`);
    return this.slotOf(this.pages, ringSlot(this, p));
  }

  /** Positions this ring holds now that the next `count` tokens will overwrite, in order. */
  positionsOverwrittenBy(count: number): number[] {
    const from = Math.max(this.sink, this.length - this.window);
    const to = Math.min(this.length, Math.max(this.sink, this.length + count - this.window));
    return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
  }

  protected slotFor(p: number): number {
    const slot = ringSlot(this, p);
    const page = Math.floor(slot / this.pool.pageSize);
    if (page >= this.pages.length) for (const p of this.pool.allocate(page + 1 - this.pages.length)) this.pages.push(p);
    return this.slotOf(this.pages, slot);
  }
}

export type LayerCache = FullCache | StreamingCache;
