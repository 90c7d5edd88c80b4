// Online choice of lazy layers (DESIGN.md section 2): a max-heap holding at most P layers. Each
// layer's (ratio, index) goes in when its prefill attention is done; whenever the heap holds
// P + 1, the largest comes out and that layer is lazy at once. At the end the L − P lazy layers
// are exactly the L − P largest under the order below, whatever order the layers arrive in.

/** a is lazier than b: a higher ratio, or the same ratio and a lower layer index. */
export function lazier(a: { ratio: number; layer: number }, b: { ratio: number; layer: number }): boolean {
  return a.ratio > b.ratio || (a.ratio === b.ratio && a.layer < b.layer);
}

export class LazyLayerSelector {
  private readonly heap: Array<{ ratio: number; layer: number }> = [];

  /** @param fullLayers P: how many layers stay full. */
  constructor(readonly fullLayers: number) {}

  /** Adds a layer; returns the layer that became lazy now, if any. */
  push(layer: number, ratio: number): number | undefined {
    if (Number.isNaN(ratio)) throw new RangeError(`lazy ratio of layer ${layer} is NaN`);
    this.heap.push({ ratio, layer });
    this.siftUp(this.heap.length - 1);
    if (this.heap.length <= this.fullLayers) return undefined;
    return this.popTop().layer;
  }

  /** A copy of the heap, for restore() (a prefill that is undone). */
  save(): ReadonlyArray<{ ratio: number; layer: number }> {
    return this.heap.map((e) => ({ ...e }));
  }

  /** Puts back a heap that save() gave. */
  restore(saved: ReadonlyArray<{ ratio: number; layer: number }>): void {
    this.heap.splice(0, this.heap.length, ...saved.map((e) => ({ ...e })));
  }

  /** Layers still full. */
  get retained(): number[] {
    return this.heap.map((e) => e.layer).sort((a, b) => a - b);
  }

  private popTop() {
    const top = this.heap[0];
    const last = this.heap.pop()!;
    if (this.heap.length) {
      this.heap[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  private siftUp(i: number) {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!lazier(this.heap[i], this.heap[parent])) break;
      [this.heap[i], this.heap[parent]] = [this.heap[parent], this.heap[i]];
      i = parent;
    }
  }

  private siftDown(i: number) {
    for (;;) {
      const l = 2 * i + 1,
        r = l + 1;
      let top = i;
      if (l < this.heap.length && lazier(this.heap[l], this.heap[top])) top = l;
      if (r < this.heap.length && lazier(this.heap[r], this.heap[top])) top = r;
      if (top === i) return;
      [this.heap[i], this.heap[top]] = [this.heap[top], this.heap[i]];
      i = top;
    }
  }
}

/** The L − P laziest layers by a global sort (the reference the heap must equal). */
export function topLazyLayers(ratios: readonly number[], fullLayers: number): number[] {
  const order = ratios.map((ratio, layer) => ({ ratio, layer })).sort((a, b) => (lazier(a, b) ? -1 : lazier(b, a) ? 1 : 0));
  return order
    .slice(0, ratios.length - fullLayers)
    .map((e) => e.layer)
    .sort((a, b) => a - b);
}
