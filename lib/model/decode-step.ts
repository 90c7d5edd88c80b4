// The batched decode step over buffers of its shape: every index it reads sits in one i32
// block, filled on the host and uploaded at once, and every activation has its own buffer (the
// step's tokens are written over the block's ids, where a step launched ahead finds them). The
// same step runs op by op (eager) or is recorded once into a CUDA graph and replayed
// (decode-graph.ts): the graph is this step, not a copy of it.
//
// The index block of a step, for batch B, L layers and layer l's page-table width W_l:
//   ids [B] | positions [B] | slots [L, B] | seqLens [L, B] | pageTables_0 [B, W_0] | ... | pageTables_{L-1}
// Each layer has its own width, so a ring layer's table is only as wide as its ring, not as wide
// as the full layers'. fill() reports what changed since the buffers' previous fill: the first
// 2B + 2LB elements (from B on when the ids stay as the last run wrote them), a row's new entries when its cache gained pages (a full cache gains one
// every pageSize tokens), and a whole row when it holds another cache's pages, so a replayed
// step uploads O(L · B) apart from rows that change hands.
import * as kernels from "../kernels";
import { Tensor } from "../runtime/tensor";
import { type LayerAttention, LayerScratch, type ModelParts, runHead, runLayer } from "./layer";
import type { Sequence } from "./sequence";

/** Element offsets of each layer's page table in the index block, and the block's end. */
function tableOffsets(batch: number, widths: readonly number[]): number[] {
  const offsets: number[] = [];
  let at = 2 * batch + 2 * widths.length * batch;
  for (const w of widths) {
    offsets.push(at);
    at += batch * w;
  }
  offsets.push(at);
  return offsets;
}

/**
 * Page-table width each layer needs for a step of `seqs`: its widest cache after one more token.
 * @example const widths = tableWidths(seqs, config.layers);
 */
export function tableWidths(seqs: readonly Sequence[], layers: number): number[] {
  const need = new Array<number>(layers).fill(1);
  for (const s of seqs) s.caches.forEach((c, l) => (need[l] = Math.max(need[l], c.pageCountAfter(1))));
  return need;
}

/**
 * The buffers of a decode step of `batch` sequences with these page-table widths, the host copy
 * of its index block, and the step itself over them.
 * @example
 * const buffers = new StepBuffers(parts, seqs.length, tableWidths(seqs, parts.config.layers));
 * buffers.fill(seqs, ids);
 * buffers.block.write(buffers.host);
 * buffers.run();
 * const logits = buffers.logits.toFloat32Array();
 */
export class StepBuffers {
  /** The index block on the device, and its host copy. */
  readonly block: Tensor;
  readonly host: Int32Array;
  /**
   * [batch, vocab] logits and [batch] most likely tokens, valid after a run until the next fill
   * is launched. The tokens are written over the block's ids, so that a step launched without
   * ids appends them where they are (Decoder.launchGreedy); they are always valid ids, so the
   * launch's checks, which see the ids last sent from the host, still hold.
   */
  readonly logits: Tensor;
  readonly tokens: Tensor;
  private readonly tableAt: number[];
  private readonly made: Tensor[] = [];
  private readonly views: {
    ids: Tensor;
    positions: Tensor;
    slots: Tensor[];
    seqLens: Tensor[];
    tables: Tensor[];
  };
  private readonly h: Tensor;
  private readonly attn: Tensor;
  private readonly attnRows: Tensor;
  private readonly scratch: LayerScratch;
  /** Which page array, of what length, each (layer, sequence) table row holds. */
  private readonly rowPages: Array<readonly number[] | undefined>;
  private readonly rowLength: Int32Array;

  constructor(
    private readonly parts: ModelParts,
    readonly batch: number,
    readonly widths: readonly number[],
  ) {
    const { config: c, dtype, device } = parts;
    const B = batch,
      L = widths.length;
    const keep = (t: Tensor) => {
      this.made.push(t);
      return t;
    };
    try {
      this.tableAt = tableOffsets(B, widths);
      this.block = keep(Tensor.empty([this.tableAt[L]], "i32", device));
      const view = (offset: number, shape: number[]) =>
        keep(
          keep(
            this.block.rows(
              offset,
              shape.reduce((a, n) => a * n, 1),
            ),
          ).reshape(shape),
        );
      this.views = {
        ids: view(0, [B]),
        positions: view(B, [B]),
        slots: Array.from({ length: L }, (_, l) => view(2 * B + l * B, [B])),
        seqLens: Array.from({ length: L }, (_, l) => view(2 * B + L * B + l * B, [B])),
        tables: Array.from({ length: L }, (_, l) => view(this.tableAt[l], [B, widths[l]])),
      };
      const empty = (shape: number[]) => keep(Tensor.empty(shape, dtype, device));
      this.h = empty([B, c.hiddenSize]);
      this.attn = empty([B, c.heads, c.headDim]);
      this.attnRows = keep(this.attn.reshape([B, c.heads * c.headDim]));
      this.logits = empty([B, c.vocabSize]);
      this.tokens = this.views.ids;
      this.scratch = new LayerScratch(parts, B);
    } catch (err) {
      for (const t of this.made) t.dispose();
      throw err;
    }
    this.host = new Int32Array(this.block.size);
    this.rowPages = new Array(L * B);
    this.rowLength = new Int32Array(L * B);
  }

  /** Whether every layer's table is at least as wide as `need`. */
  fits(need: readonly number[]): boolean {
    return need.every((n, l) => n <= this.widths[l]);
  }

  /**
   * Fills the host index block for ids[b] appended to seqs[b], reserving each cache's slot.
   * Returns the (start, count) ranges of the block that changed since the previous fill. Without
   * ids, the ids are left out of the block and of what changed: on the device they are then the
   * tokens the last run chose (`tokens` is the block's ids).
   */
  fill(seqs: readonly Sequence[], ids: readonly number[] | undefined): Int32Array {
    const { host, batch: B, widths, tableAt } = this;
    const L = widths.length;
    const slots = 2 * B,
      lens = slots + L * B;
    const changed = ids ? [0, tableAt[0]] : [B, tableAt[0] - B];
    for (let b = 0; b < B; b++) {
      if (ids) host[b] = ids[b];
      host[B + b] = seqs[b].length;
    }
    for (let l = 0; l < L; l++) {
      const W = widths[l];
      for (let b = 0; b < B; b++) {
        const cache = seqs[b].caches[l];
        const row = l * B + b;
        host[slots + row] = cache.reserveOne();
        host[lens + row] = cache.validSlots;
        // A cache's page array only grows by appending until it is replaced (layer-cache.ts),
        // so the same array at the same length is the same row, and at a greater length the
        // same row followed by new pages.
        const pages = cache.pageTable;
        const known = this.rowPages[row] === pages ? this.rowLength[row] : -1;
        if (known === pages.length) continue;
        const rowAt = tableAt[l] + b * W;
        let at: number, count: number;
        if (known >= 0 && known < pages.length) {
          at = rowAt + known;
          count = pages.length - known;
          for (let i = known; i < pages.length; i++) host[rowAt + i] = pages[i];
        } else {
          at = rowAt;
          count = W;
          host.set(pages, at);
          host.fill(0, at + pages.length, at + W);
        }
        this.rowPages[row] = pages;
        this.rowLength[row] = pages.length;
        const last = changed.length - 2;
        if (changed[last] + changed[last + 1] === at) changed[last + 1] += count;
        else changed.push(at, count);
      }
    }
    return Int32Array.from(changed);
  }

  /** Makes the next fill write and name every table row, as the first does. */
  forgetRows(): void {
    this.rowPages.fill(undefined);
  }

  /**
   * The step over these buffers, reading the index block on the device: embedding, every layer
   * with paged decode attention, the logits and their argmax. `observe`, if given, sees each
   * layer's rotated queries [batch, heads, headDim] before they attend (not while recording).
   */
  run(observe?: (layer: number, q: Tensor) => void): void {
    const { parts, views, h, attn, attnRows } = this;
    const { kPages, vPages } = parts.pool;
    const attention: LayerAttention = {
      kvTarget: (l) => ({ kPages, vPages, slots: views.slots[l] }),
      attend: (l, q) => {
        observe?.(l, q);
        kernels.decodeAttention({ q, kPages, vPages, pageTable: views.tables[l], seqLens: views.seqLens[l], out: attn });
        return attnRows;
      },
    };
    kernels.embedding({ ids: views.ids, table: parts.weights.embed, out: h });
    for (let l = 0; l < parts.config.layers; l++) runLayer(parts, this.scratch, h, l, views.positions, attention);
    runHead(parts, h, this.logits);
    kernels.argmax({ logits: this.logits, out: this.tokens });
  }

  dispose(): void {
    this.scratch.dispose();
    for (const t of this.made) t.dispose();
    this.made.length = 0;
  }
}
