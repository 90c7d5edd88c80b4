// CUDA graphs: a sequence of kernel calls on one device recorded once and replayed, so a step
// made of hundreds of small kernels costs one launch. The decode step of model/decode-graph.ts
// is the user. Mechanism in native/addon/graph.cpp; this is its typed face.
import { addon, type NativeGraphHandle } from "./native";
import type { Tensor } from "./tensor";

/**
 * Kernel calls recorded into a CUDA graph. Recording runs nothing; every `launch` replays the
 * calls on the same tensors, after copying new contents into `input`, an i32 tensor whose
 * views are the calls' index tensors (token ids, positions, slots, page tables, lengths). The
 * bounds checks those calls make are recorded too and run on each launch's data before it is
 * copied, so a replay rejects what the same calls made one by one would reject.
 */
export class CudaGraph implements Disposable {
  private constructor(
    private handle: NativeGraphHandle | undefined,
    /** The i32 tensor each launch fills. */
    readonly input: Tensor,
  ) {}

  /**
   * Records the sync kernel calls `record` makes on `input`'s device. Every tensor they use
   * must exist beforehand (allocating, copying or reading on that device while recording is
   * an error), and their index tensors must be views of `input`. If `record` throws, nothing
   * is kept and the error is rethrown.
   * @example
   * const block = Tensor.empty([n], "i32", "cuda:0");
   * const graph = CudaGraph.capture(block, () => kernels.embedding({ ids: block.rows(0, 4), table, out }));
   * graph.launch(Int32Array.from([1, 2, 3, 4, ...rest]));
   */
  static capture(input: Tensor, record: () => void): CudaGraph {
    const native = addon();
    native.captureBegin({ input: input.handle });
    try {
      record();
    } catch (err) {
      native.captureEnd({ input: input.handle, discard: true });
      throw err;
    }
    return new CudaGraph(native.captureEnd({ input: input.handle }), input);
  }

  /**
   * Copies `data` (as many elements as `input`) into `input`, checks it, and enqueues one replay.
   * `changed`, (start, count) pairs of elements, names the parts of `data` that differ from the
   * previous launch: only those are copied, the rest of `input` keeps what it held. The first
   * launch, and the one after a launch that failed its checks, copy all of `data`.
   * @example
   * graph.launch(block);                                  // everything
   * block[0] = nextToken;
   * graph.launch(block, Int32Array.of(0, 1));             // one element changed
   */
  launch(data: Int32Array, changed?: Int32Array): void {
    if (!this.handle) throw new Error("this CUDA graph was disposed; capture a new one");
    addon().graphLaunch(this.handle, data, changed);
  }

  /** Frees the graph (after its last replay). Safe to call twice. */
  dispose(): void {
    if (this.handle) addon().graphDispose(this.handle);
    this.handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
