// Tensor: a shape, a dtype and a device around native-owned memory.
import { rejectUnknownOptions, show } from "../common/validate";
import { addon, type NativeReadHandle, type NativeTensorHandle } from "./native";

/** Element types: 32-bit float, IEEE half, bfloat16, 32-bit integer. */
export type DType = "f32" | "f16" | "bf16" | "i32";
/** `"cpu"`, `"cuda"` (same as `"cuda:0"`) or `"cuda:N"`. */
export type DeviceName = "cpu" | "cuda" | `cuda:${number}`;

/** The TypedArray holding a dtype's raw values: 16-bit floats travel as their bits. */
export type RawArray<D extends DType> = D extends "f32" ? Float32Array : D extends "i32" ? Int32Array : Uint16Array;

/**
 * Bytes of one element of `dtype`.
 * @example dtypeBytes("bf16") // 2
 */
export function dtypeBytes(dtype: DType): number {
  return dtype === "f32" || dtype === "i32" ? 4 : 2;
}

/** A new tensor's dtype and device. */
export interface TensorOptions {
  /** Element type; defaults to the natural type of the data (`f32` for Float32Array, ...). */
  dtype?: DType;
  /** Where the memory lives; default `"cpu"`. */
  device?: DeviceName;
}

const dtypes: readonly DType[] = ["f32", "f16", "bf16", "i32"];

function checkShape(shape: readonly number[]): number[] {
  if (!Array.isArray(shape) || shape.length === 0)
    throw new TypeError(`shape must be a non-empty array of positive integers, got ${Array.isArray(shape) ? "[]" : show(shape)}`);
  for (const dim of shape) {
    if (!Number.isInteger(dim) || dim < 1)
      throw new RangeError(
        `shape [${shape.map(show).join(", ")}] has dimension ${show(dim)}: every dimension must be a number, an integer >= 1`,
      );
  }
  return [...shape];
}

function checkDType(dtype: string): DType {
  if (!dtypes.includes(dtype as DType)) throw new TypeError(`unknown dtype '${dtype}': use ${dtypes.join(", ")}`);
  return dtype as DType;
}

// By tag rather than instanceof, so arrays from another realm (vm contexts, workers) count too.
function naturalDType(data: ArrayBufferView): DType {
  const tag = Object.prototype.toString.call(data);
  if (tag === "[object Float32Array]") return "f32";
  if (tag === "[object Int32Array]") return "i32";
  if (tag === "[object Uint16Array]")
    throw new TypeError("a Uint16Array holds raw f16 or bf16 bits: pass { dtype: 'f16' } or { dtype: 'bf16' }");
  throw new TypeError("tensor data must be a Float32Array, Int32Array or Uint16Array (f16/bf16 bits)");
}

/**
 * A tensor whose memory is owned by native code, on the CPU or a CUDA device.
 * Call `dispose()` (or use `using`) to free it at once; forgotten tensors are freed by GC.
 *
 * @example
 * const q = Tensor.from(new Float32Array(8 * 4 * 64).map(Math.random), [8, 4, 64], { dtype: "bf16" });
 * console.log(q.shape, q.dtype, q.device); // [8, 4, 64] bf16 cpu
 * const values = q.toFloat32Array();      // widened copy
 * q.dispose();
 */
export class Tensor implements Disposable, AsyncDisposable {
  /**
   * The dimensions, outermost first (frozen).
   * @example const [tokens, heads, headDim] = q.shape;
   */
  readonly shape: readonly number[];
  /**
   * The element type.
   * @example const values = t.dtype === "i32" ? t.toArray() : t.toFloat32Array(); // toArray() of f16/bf16 gives their bits
   */
  readonly dtype: DType;
  /**
   * Where the memory lives: "cpu" or "cuda:N" ("cuda" is stored as "cuda:0").
   * @example const out = Tensor.empty(x.shape, x.dtype, x.device); // kernels take their tensors on one device
   */
  readonly device: DeviceName;
  /** @internal */
  readonly handle: NativeTensorHandle;

  private constructor(handle: NativeTensorHandle, shape: number[], dtype: DType, device: DeviceName) {
    this.handle = handle;
    this.shape = Object.freeze(shape);
    this.dtype = dtype;
    this.device = device;
  }

  /**
   * Uninitialised memory of the given shape.
   * @example const out = Tensor.empty([16, 8, 128], "bf16", "cuda:0");
   */
  static empty(shape: readonly number[], dtype: DType, device: DeviceName = "cpu"): Tensor {
    const dims = checkShape(shape);
    const handle = new (addon().NativeTensor)(dims, checkDType(dtype), device);
    return new Tensor(handle, dims, dtype, normaliseDevice(device));
  }

  /**
   * A tensor holding a copy of `data`. A Float32Array becomes f16/bf16 by rounding to nearest
   * even when such a dtype is asked for; a Uint16Array is taken as raw f16/bf16 bits.
   * @example const t = Tensor.from(new Int32Array([0, 1, 2]), [3]);
   */
  static from(data: Float32Array | Int32Array | Uint16Array, shape: readonly number[], options: TensorOptions = {}): Tensor {
    // A bare dtype string in place of the options object would otherwise be read as no options at all.
    if (typeof options !== "object" || options === null || Array.isArray(options))
      throw new TypeError(
        `Tensor.from: options must be an object such as { dtype: "bf16", device: "cpu" }, got ${typeof options === "string" ? JSON.stringify(options) : String(options)}`,
      );
    rejectUnknownOptions(options, ["dtype", "device"], "Tensor.from: options");
    const { dtype: askedDType, device } = options;
    const dtype = checkDType(askedDType ?? naturalDType(data));
    const tensor = Tensor.empty(shape, dtype, device ?? "cpu");
    try {
      tensor.handle.write(data);
    } catch (err) {
      tensor.dispose();
      throw err;
    }
    return tensor;
  }

  /**
   * Number of elements.
   * @example Tensor.empty([8, 4, 64], "f32").size // 2048
   */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /**
   * Bytes of memory held (0 once disposed).
   * @example Tensor.empty([8, 4, 64], "bf16").bytes // 4096
   */
  get bytes(): number {
    return this.handle.bytes;
  }

  /**
   * Whether dispose() was called on this tensor (reading it then throws).
   * @example const t = Tensor.empty([4], "f32"); t.dispose(); t.disposed // true
   */
  get disposed(): boolean {
    return this.handle.disposed;
  }

  /**
   * A copy of the raw contents (Uint16Array of bits for f16/bf16).
   * @example Tensor.from(new Float32Array([1, 2]), [2], { dtype: "bf16" }).toArray() // Uint16Array [16256, 16384]: 0x3f80, 0x4000
   */
  toArray(): RawArray<DType> {
    return this.handle.read();
  }

  /**
   * Starts copying the raw contents to the host without waiting for the device: the copy is
   * queued behind the work queued so far, and `wait()` returns the contents once it has landed,
   * without waiting for work queued after it. A CUDA tensor may hold at most 64 KiB (a decode
   * step's tokens); a CPU tensor is copied at once.
   * @example
   * const pending = tokens.readLater();
   * graph.launch(block);                    // the next step runs meanwhile
   * const ids = pending.wait() as Int32Array;
   */
  readLater(): PendingRead {
    return new PendingRead(addon().startRead(this.handle));
  }

  /**
   * A copy widened to Float32Array.
   * @example Tensor.from(new Float32Array([0.1]), [1], { dtype: "bf16" }).toFloat32Array() // Float32Array [0.10009765625]: stored rounded
   */
  toFloat32Array(): Float32Array {
    return this.handle.readFloat32();
  }

  /**
   * A zero-copy TypedArray over a CPU tensor's memory. Writes through it change the tensor;
   * after `dispose()` the view is detached (length 0) rather than dangling. Every view shares one
   * ArrayBuffer, which the tensor holds until it is disposed or collected; a buffer moved away
   * with `transfer()` keeps the memory until it is collected itself. Do not hang the tensor on
   * that buffer (a property of it, or a WeakMap keyed by it) without disposing the tensor: the
   * two would keep each other. Node cannot hold one buffer over 4 GiB (Node 20), so a larger
   * tensor throws here: use `viewBytes`.
   * @example const values = Tensor.from(new Float32Array([1, 2]), [2]).view(); // Float32Array [1, 2]
   */
  view(): RawArray<DType> {
    return this.handle.view();
  }

  /**
   * A zero-copy window of at most 1 GiB over a CPU tensor's raw bytes, detached on `dispose()`;
   * how tensors of any size are filled or read piece by piece. Windows share view()'s buffer;
   * those of a tensor over 4 GiB (more than one buffer may hold in Node 20) are each a buffer of
   * their own, held until the tensor is disposed.
   * @example
   * const big = Tensor.empty([2 ** 31], "bf16");                  // 4 GiB
   * fs.readSync(fd, big.viewBytes(2 ** 30, 2 ** 30), 0, 2 ** 30, 0); // fills its second GiB
   */
  viewBytes(byteOffset: number, byteLength: number): Uint8Array {
    return this.handle.viewBytes(byteOffset, byteLength);
  }

  /**
   * Overwrites the contents with `data` (same rules as `Tensor.from`).
   * @example positions.write(Int32Array.of(step)); // one input tensor reused by every decode step
   */
  write(data: Float32Array | Int32Array | Uint16Array): void {
    this.handle.write(data);
  }

  /**
   * A copy on `device`.
   * @example const host = logits.to("cpu"); // view() and viewBytes() need CPU memory
   */
  to(device: DeviceName): Tensor {
    return new Tensor(this.handle.copyTo(device), [...this.shape], this.dtype, normaliseDevice(device));
  }

  /**
   * The same memory seen with another shape of the same element count (no copy).
   * @example const heads = qProj.reshape([tokens, 32, 128]);
   */
  reshape(shape: readonly number[]): Tensor {
    const dims = checkShape(shape);
    if (dims.reduce((a, b) => a * b, 1) !== this.size)
      throw new RangeError(`cannot reshape [${this.shape.join(", ")}] (${this.size} elements) to [${dims.join(", ")}]`);
    return new Tensor(this.handle.slice(0, dims), dims, this.dtype, this.device);
  }

  /**
   * Rows [start, start + count) along the first dimension, sharing this tensor's memory.
   * The memory lives until this tensor and all its views are disposed.
   * @example const last = hidden.rows(tokens - 1, 1);
   */
  rows(start: number, count: number): Tensor {
    const rowSize = this.size / this.shape[0];
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 1 || start + count > this.shape[0])
      throw new RangeError(`rows(${start}, ${count}) is outside the ${this.shape[0]} rows of [${this.shape.join(", ")}]`);
    const dims = [count, ...this.shape.slice(1)];
    return new Tensor(this.handle.slice(start * rowSize, dims), dims, this.dtype, this.device);
  }

  /**
   * Copies `src` (same dtype and element count, any device) into this tensor.
   * @example gpuInput.copyFrom(hostStaging); // into memory allocated once, rather than a new tensor per step
   */
  copyFrom(src: Tensor): void {
    this.handle.copyFrom(src.handle);
  }

  /**
   * Frees the memory now, unless another tensor over it (a slice, a reshape) or a view's buffer
   * moved away with `transfer()` still holds it. Safe to call twice; kernels still running keep
   * what they use.
   * @example
   * const logits = kernels.linear({ x: hidden, weight: lmHead });
   * const next = kernels.argmax({ logits }).toArray()[0];
   * logits.dispose(); // rows × vocab of memory back now, not at the next GC
   */
  dispose(): void {
    this.handle.dispose();
  }

  /**
   * dispose(), for `using`.
   * @example
   * {
   *   using ids = Tensor.from(Int32Array.of(1, 15043), [2]);
   *   console.log(ids.toArray());
   * } // freed here, even if something above threw
   */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * dispose(), for `await using`.
   * @example await using out = await kernels.linearAsync({ x, weight });
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  /**
   * The dtype, shape and device, for logs and errors; never the contents.
   * @example String(Tensor.empty([2, 3], "bf16")) // "Tensor(bf16, [2, 3], cpu)"
   */
  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(", ")}], ${this.device}${this.disposed ? ", disposed" : ""})`;
  }
}

/**
 * A copy to the host under way (Tensor.readLater); its buffer goes back once waited for or collected.
 * @example
 * const pending: PendingRead[] = batchTokens.map((t) => t.readLater()); // every copy queued before any wait
 * const ids = pending.map((p) => p.wait() as Int32Array);
 */
export class PendingRead {
  private outcome: { contents: RawArray<DType> } | { error: unknown } | undefined;

  /** @internal use Tensor.readLater */
  constructor(private readonly read: NativeReadHandle) {}

  /**
   * The contents, waiting for the copy if it has not landed yet; every call returns the same
   * array, or throws the same error (a kernel ahead of the copy failed).
   * @example const ids = tokens.readLater().wait() as Int32Array;
   */
  wait(): RawArray<DType> {
    if (!this.outcome)
      try {
        this.outcome = { contents: addon().finishRead(this.read) };
      } catch (error) {
        this.outcome = { error };
      }
    if ("error" in this.outcome) throw this.outcome.error;
    return this.outcome.contents;
  }
}

function normaliseDevice(device: DeviceName): DeviceName {
  return device === "cuda" ? "cuda:0" : device;
}
