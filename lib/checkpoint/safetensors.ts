// Safetensors reading: the header is parsed and checked in full before any tensor is read, and
// tensor bytes go from the file straight into native memory (reads into a tensor's view, or the
// native readFile, which takes a device tensor through pinned buffers), so a checkpoint never
// passes through the JS heap.
//
// Format: 8 bytes little-endian u64 header length N, N bytes of JSON
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {...} }, then the data;
// offsets are relative to the end of the header.
import * as fs from "node:fs";
import { show } from "../common/validate";
import { type DType, Tensor } from "../runtime/tensor";

/**
 * Bits per element of every dtype the format defines (the safetensors crate's Dtype): a file may
 * hold tensors of any of them, and only the ones read must be dtypes a Tensor has.
 */
const bitSizes = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;
export type FileDType = keyof typeof bitSizes;
const tensorDTypes: Partial<Record<FileDType, DType>> = { F32: "f32", F16: "f16", BF16: "bf16", I32: "i32" };
const maxHeaderBytes = 100 * 2 ** 20;

export interface SafetensorsEntry {
  name: string;
  dtype: FileDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

/**
 * The error every malformed file raises: it names the file and what is wrong with it.
 * @example
 * try {
 *   model = await loadModel(dir);
 * } catch (err) {
 *   if (err instanceof SafetensorsError) console.error(`download it again: ${err.message}`); else throw err;
 * }
 */
export class SafetensorsError extends Error {
  /**
   * `problem` in `file`; the message is both.
   * @example new SafetensorsError("model.safetensors", "truncated").message // "model.safetensors: truncated"
   */
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = "SafetensorsError";
  }
}

/**
 * One open .safetensors file with a validated header.
 * @example
 * const file = SafetensorsFile.open("model.safetensors");
 * const w = file.read("model.norm.weight");   // a Tensor on the CPU
 * file.close();
 */
export class SafetensorsFile {
  readonly path: string;
  readonly entries: ReadonlyMap<string, SafetensorsEntry>;
  readonly metadata: Record<string, string>;
  private fd: number | undefined;
  // readAsync's reads in flight on the thread pool, which hold the descriptor's number: close()
  // waits for them, so a read never lands on a closed (or reused) descriptor.
  private readsInFlight = 0;
  private closing = false;

  private constructor(path: string, fd: number, entries: Map<string, SafetensorsEntry>, metadata: Record<string, string>) {
    this.path = path;
    this.fd = fd;
    this.entries = entries;
    this.metadata = metadata;
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      // Opening a FIFO for reading would block until something writes to it; without blocking,
      // parseHeader's check that this is a regular file refuses it. Reads of a regular file ignore the flag.
      fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (err) {
      throw new SafetensorsError(path, `cannot open: ${(err as Error).message}`);
    }
    try {
      const { entries, metadata } = parseHeader(path, fd);
      return new SafetensorsFile(path, fd, entries, metadata);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  get(name: string): SafetensorsEntry {
    const entry = this.entries.get(name);
    if (!entry) throw new SafetensorsError(this.path, `has no tensor named '${name}'`);
    return entry;
  }

  /**
   * Reads a tensor into new CPU memory in its stored dtype (F32, F16, BF16 or I32), or into
   * `dest` at element offset `offset` (so several tensors can be stacked into one).
   */
  read(name: string, dest?: Tensor, offset = 0): Tensor {
    const { target, window, length, entry } = this.prepareRead(name, dest, offset);
    try {
      this.readBytes(window, length, entry.begin, name);
    } catch (err) {
      if (!dest) target.dispose();
      throw err;
    }
    return target;
  }

  /**
   * `read` with the file I/O on libuv's thread pool, so the event loop keeps running; `dest` may
   * also be a device tensor, which the bytes reach through pinned buffers rather than pageable
   * host memory.
   * @example const q = await file.readAsync("model.layers.0.self_attn.q_proj.weight", Tensor.empty([4096, 4096], "bf16", "cuda:0"));
   */
  async readAsync(name: string, dest?: Tensor, offset = 0): Promise<Tensor> {
    const { target, length, entry, start } = this.prepareRead(name, dest, offset);
    try {
      if (this.fd === undefined || this.closing) throw new SafetensorsError(this.path, "is closed");
      const fd = this.fd;
      this.readsInFlight++;
      try {
        await target.handle.readFile(fd, entry.begin, start, length).catch((err: Error) => {
          throw new SafetensorsError(this.path, `while reading tensor '${name}': ${err.message}`);
        });
      } finally {
        this.readsInFlight--;
        if (this.closing && this.readsInFlight === 0) this.close();
      }
    } catch (err) {
      if (!dest) target.dispose();
      throw err;
    }
    return target;
  }

  private prepareRead(name: string, dest: Tensor | undefined, offset: number) {
    const entry = this.get(name);
    const dtype = tensorDTypes[entry.dtype];
    if (!dtype)
      throw new SafetensorsError(
        this.path,
        `tensor '${name}' is ${entry.dtype}, a dtype this library does not support; it reads ${Object.keys(tensorDTypes).join(", ")}`,
      );
    if (dest && dest.dtype !== dtype)
      throw new SafetensorsError(this.path, `tensor '${name}' is ${entry.dtype} but the destination is ${dest.dtype}`);
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new SafetensorsError(
        this.path,
        `reading tensor '${name}': offset must be an element index (an integer >= 0), got ${show(offset)}`,
      );
    const target = dest ?? Tensor.empty(entry.shape.length ? entry.shape : [1], dtype, "cpu");
    const start = (offset * bitSizes[entry.dtype]) / 8;
    const length = entry.end - entry.begin;
    if (start + length > target.bytes) {
      if (!dest) target.dispose();
      throw new SafetensorsError(this.path, `tensor '${name}' does not fit the destination at element ${offset}`);
    }
    // Zero-copy windows of the target: one JS buffer cannot hold a tensor over 4 GiB.
    const window = (at: number, n: number) => target.viewBytes(start + at, n);
    return { target, entry, length, window, start };
  }

  private readBytes(window: (at: number, n: number) => Uint8Array, length: number, position: number, name: string): void {
    if (this.fd === undefined || this.closing) throw new SafetensorsError(this.path, "is closed");
    const chunk = 1 << 30;
    for (let done = 0; done < length; ) {
      const want = Math.min(chunk, length - done);
      const n = fs.readSync(this.fd, window(done, want), 0, want, position + done);
      if (n === 0) throw new SafetensorsError(this.path, `ended while reading tensor '${name}': the file is truncated`);
      done += n;
    }
  }

  /** Closes the file; with reads still in flight, once the last of them has ended. */
  close(): void {
    this.closing = this.readsInFlight > 0;
    if (this.closing || this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads and checks the header the way the reference implementation does: a JSON object starting
 * with '{' (space padding after it is allowed), string-valued __metadata__, known dtypes, shapes
 * whose byte size matches their data_offsets, and tensors that tile the data region exactly —
 * from byte 0, without gaps or overlaps, to the end of the file. A length prefix that is off by a
 * few bytes (into the padding) or a dropped entry therefore cannot go unnoticed.
 */
function parseHeader(path: string, fd: number) {
  const stat = fs.fstatSync(fd);
  if (!stat.isFile()) throw new SafetensorsError(path, "is not a regular file");
  const size = stat.size;
  if (size < 8) throw new SafetensorsError(path, `is ${size} bytes, too short for a safetensors header`);
  const lengthBytes = Buffer.alloc(8);
  if (fs.readSync(fd, lengthBytes, 0, 8, 0) !== 8) throw new SafetensorsError(path, "ended while reading the header length");
  const headerLength = Number(lengthBytes.readBigUInt64LE(0));
  if (headerLength < 2 || headerLength > maxHeaderBytes)
    throw new SafetensorsError(
      path,
      `header length ${headerLength} is not plausible (expected 2 .. ${maxHeaderBytes} bytes): not a safetensors file?`,
    );
  if (8 + headerLength > size)
    throw new SafetensorsError(path, `header says ${headerLength} bytes but the file has only ${size - 8} after the length: truncated`);
  const headerBytes = Buffer.alloc(headerLength);
  if (fs.readSync(fd, headerBytes, 0, headerLength, 8) !== headerLength) throw new SafetensorsError(path, "ended while reading the header");
  if (headerBytes[0] !== 0x7b) throw new SafetensorsError(path, "header must start with '{' (a JSON object): not a safetensors file?");
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new SafetensorsError(path, "header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(path, `header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    throw new SafetensorsError(path, "header is not a JSON object");

  const dataStart = 8 + headerLength;
  const dataSize = size - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== "string"))
        throw new SafetensorsError(path, "__metadata__ must map strings to strings");
      metadata = value as Record<string, string>;
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== "object" || info === null || Array.isArray(info))
      throw new SafetensorsError(path, `entry '${name}' is not an object`);
    if (typeof info.dtype !== "string" || !Object.hasOwn(bitSizes, info.dtype))
      throw new SafetensorsError(
        path,
        `tensor '${name}' has unknown dtype ${JSON.stringify(info.dtype)}; safetensors dtypes are ${Object.keys(bitSizes).join(", ")}`,
      );
    const bits = bitSizes[info.dtype as FileDType];
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new SafetensorsError(path, `tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    const offsets = info.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    )
      throw new SafetensorsError(path, `tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`);
    if (offsets[1] > dataSize)
      throw new SafetensorsError(
        path,
        `tensor '${name}' ends at byte ${offsets[1]} of the data but the file holds ${dataSize}: truncated or corrupt`,
      );
    const expectedBits = (shape as number[]).reduce((a, b) => a * b, bits);
    if (!Number.isSafeInteger(expectedBits))
      throw new SafetensorsError(path, `tensor '${name}' has shape ${JSON.stringify(shape)}, too large for any file`);
    if (expectedBits % 8)
      throw new SafetensorsError(
        path,
        `tensor '${name}' (${info.dtype} ${JSON.stringify(shape)}) is ${expectedBits} bits, which does not end on a byte boundary`,
      );
    const expected = expectedBits / 8;
    if (offsets[1] - offsets[0] !== expected)
      throw new SafetensorsError(
        path,
        `tensor '${name}' (${info.dtype} ${JSON.stringify(shape)}) needs ${expected} bytes but its data_offsets span ${offsets[1] - offsets[0]}`,
      );
    entries.set(name, {
      name,
      dtype: info.dtype as FileDType,
      shape: shape as number[],
      begin: dataStart + offsets[0],
      end: dataStart + offsets[1],
    });
  }
  checkCoverage(path, [...entries.values()], dataStart, dataSize);
  return { entries, metadata };
}

/** The tensors, in file order, must tile [0, dataSize) of the data exactly. */
function checkCoverage(path: string, entries: SafetensorsEntry[], dataStart: number, dataSize: number): void {
  const sorted = entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: SafetensorsEntry | undefined;
  for (const e of sorted) {
    const begin = e.begin - dataStart;
    if (begin < covered) throw new SafetensorsError(path, `tensors '${previous!.name}' and '${e.name}' overlap in the file`);
    if (begin > covered)
      throw new SafetensorsError(
        path,
        `bytes [${covered}, ${begin}) of the data lie ${previous ? `between tensors '${previous.name}' and '${e.name}'` : `before tensor '${e.name}'`} ` +
          "and belong to no tensor: the header does not describe this data",
      );
    covered = e.end - dataStart;
    previous = e;
  }
  if (covered !== dataSize)
    throw new SafetensorsError(
      path,
      `tensors cover ${covered} bytes of data but the file holds ${dataSize} after the header: the header length is wrong or the file has extra bytes`,
    );
}
