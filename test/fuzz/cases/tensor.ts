// Child side of the Tensor fuzz: a short program of Tensor calls (create, write, read, view,
// reshape, rows, copyFrom, to, dispose, and slices of the exported native handle) with odd
// arguments among the good ones, run against a model of what every tensor must hold. A call
// either does what the model says or throws a useful Error; afterwards everything is freed.
import { type DType, Tensor } from "../../../lib";
import { roundTo } from "../../helpers/reference";
import { attempt, expectMemoryBack, expectUsefulError, fail, liveCpuBytes } from "../harness/checks";

/** Data for from/write: its kind, a length offset from the target's size, and a few edge values. */
export interface DataSpec {
  kind: "f32" | "i32" | "u16" | "f64" | "u8" | "sharedF32" | "sharedI32" | "detached" | "array" | "odd";
  lengthDelta: number;
  seed: number;
  odd?: unknown;
}

export type TensorOp =
  | { op: "empty"; shape: unknown; dtype: unknown; device: unknown }
  | { op: "from"; data: DataSpec; shape: unknown; options: unknown }
  | { op: "write"; target: number; data: DataSpec }
  | { op: "read"; target: number; how: "toArray" | "toFloat32Array" | "view" }
  | { op: "viewWrite"; target: number; seed: number }
  | { op: "reshape"; target: number; shape: unknown }
  | { op: "rows"; target: number; start: unknown; count: unknown }
  | { op: "copyFrom"; target: number; source: number }
  | { op: "to"; target: number; device: unknown }
  | { op: "dispose"; target: number }
  | { op: "sliceHandle"; target: number; offset: unknown; dims: unknown }
  | { op: "bigView"; dtype: "f32" | "i32" | "bf16"; extra: number };

export interface TensorCase {
  ops: TensorOp[];
}

/** What a tensor holds: a window of a storage. `values` are decoded numbers; NaN where unknown (never written). */
interface Storage {
  dtype: DType;
  values: Float64Array;
  known: Uint8Array;
}
interface Model {
  tensor: Tensor;
  storage: Storage;
  offset: number;
  size: number;
  disposed: boolean;
}

const dtypes = ["f32", "f16", "bf16", "i32"];
const bigElements = 1 << 22; // tensors larger than this are only viewed, never read or copied

function validShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.length > 0 && shape.every((d) => typeof d === "number" && Number.isInteger(d) && d >= 1);
}
const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function values(seed: number, n: number): number[] {
  // Normal-ish values and, now and then, the edges: ±Infinity, NaN, -0, f16 overflow and subnormals.
  const edges = [Infinity, -Infinity, NaN, -0, 65520, 1e-8, 3.4e38, -2.5e-40];
  let state = seed >>> 0 || 1;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  return Array.from({ length: n }, () => (next() < 0.05 ? edges[Math.floor(next() * edges.length)] : next() * 8 - 4 || 1));
}

function makeData(spec: DataSpec, n: number): unknown {
  const length = Math.max(0, n + spec.lengthDelta);
  const v = values(spec.seed, length);
  switch (spec.kind) {
    case "f32":
      return Float32Array.from(v);
    case "i32":
      return Int32Array.from(v, (x) => (Number.isFinite(x) ? Math.round(x * 1000) : 7));
    case "u16":
      return Uint16Array.from(v, (x) => (Number.isFinite(x) ? Math.abs(Math.round(x * 9000)) & 0xffff : 0x7c00));
    case "f64":
      return Float64Array.from(v);
    case "u8":
      return Uint8Array.from(v, (x) => Math.abs(Math.round(x)) & 0xff);
    case "sharedF32": {
      const a = new Float32Array(new SharedArrayBuffer(4 * length));
      a.set(v);
      return a;
    }
    case "sharedI32": {
      const a = new Int32Array(new SharedArrayBuffer(4 * length));
      a.set(v.map((x) => (Number.isFinite(x) ? Math.round(x) : 3)));
      return a;
    }
    case "detached": {
      const a = Float32Array.from(v);
      structuredClone(a.buffer, { transfer: [a.buffer] });
      return a;
    }
    case "array":
      return v;
    case "odd":
      return spec.odd;
  }
}

function decodeHalf(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1,
    exp = (bits >> 10) & 0x1f,
    frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The decoded values a tensor of `dtype` holds after being given `data`, or undefined if that data is not accepted. */
function expectedValues(data: unknown, dtype: DType): number[] | undefined {
  // A detached buffer's array cannot even be read: nothing to expect but an Error.
  if (ArrayBuffer.isView(data) && data.buffer.byteLength === 0 && data.byteLength === 0 && (data as Float32Array).length === 0) {
    try {
      Array.from(data as Float32Array);
    } catch {
      return undefined;
    }
  }
  const tag = Object.prototype.toString.call(data);
  if (tag === "[object Float32Array]" && dtype !== "i32")
    return Array.from(data as Float32Array, (x) => (dtype === "f32" ? x : roundTo(dtype, x)));
  if (tag === "[object Int32Array]" && dtype === "i32") return Array.from(data as Int32Array);
  if (tag === "[object Uint16Array]" && dtype === "f16") return Array.from(data as Uint16Array, decodeHalf);
  if (tag === "[object Uint16Array]" && dtype === "bf16")
    return Array.from(data as Uint16Array, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]);
  return undefined;
}

const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

function checkContents(m: Model, got: ArrayLike<number>, what: string, decoded: boolean): void {
  if (got.length !== m.size) fail(`${what}: read ${got.length} values from a tensor of ${m.size}`);
  for (let i = 0; i < m.size; i++) {
    const at = m.offset + i;
    if (!m.storage.known[at]) continue;
    let want = m.storage.values[at];
    if (!decoded && m.storage.dtype !== "f32" && m.storage.dtype !== "i32") continue; // raw bits: checked through toFloat32Array
    if (m.storage.dtype === "f32") want = Math.fround(want);
    if (!same(got[i], want)) fail(`${what}: element ${i} is ${got[i]}, the tensor was given ${want} (silently wrong)`);
  }
}

function store(m: Model, vals: ArrayLike<number>): void {
  for (let i = 0; i < m.size; i++) {
    m.storage.values[m.offset + i] = vals[i];
    m.storage.known[m.offset + i] = 1;
  }
}

export async function runCase(c: TensorCase): Promise<void> {
  const before = await liveCpuBytes();
  const live: Model[] = [];
  const extraHandles: Array<{ dispose(): void }> = [];
  const pick = (i: number) => (live.length ? live[i % live.length] : undefined);
  const describe = (v: unknown) => {
    try {
      return JSON.stringify(v, (_k, x) =>
        typeof x === "bigint" ? `${x}n` : x === undefined ? "undefined" : typeof x === "number" && !Number.isFinite(x) ? String(x) : x,
      )?.slice(0, 100);
    } catch {
      return String(v);
    }
  };
  try {
    for (const [step, op] of c.ops.entries()) {
      const what = `step ${step} ${op.op}`;
      const must = async <T>(valid: boolean, fn: () => T, label: string): Promise<T | undefined> => {
        const r = await attempt(fn);
        if (!r.ok) {
          if (valid) fail(`${label}: a valid call threw: ${(r.error as Error)?.message}`);
          expectUsefulError(r.error, label);
          return undefined;
        }
        if (!valid) fail(`${label}: accepted, but it must throw an Error`);
        return r.value;
      };
      switch (op.op) {
        case "empty": {
          const ok =
            validShape(op.shape) &&
            count(op.shape) <= 4096 &&
            dtypes.includes(op.dtype as string) &&
            (op.device === "cpu" || op.device === undefined);
          const huge = validShape(op.shape) && count(op.shape) > 4096;
          const label = `${what}(${describe(op.shape)}, ${describe(op.dtype)}, ${describe(op.device)})`;
          if (huge) {
            // Big shapes may or may not be allocated; either way nothing may crash.
            const r = await attempt(() => Tensor.empty(op.shape as number[], op.dtype as DType, op.device as never));
            if (r.ok) r.value.dispose();
            else expectUsefulError(r.error, label);
            break;
          }
          const t = await must(ok, () => Tensor.empty(op.shape as number[], op.dtype as DType, op.device as never), label);
          if (t)
            live.push({
              tensor: t,
              storage: { dtype: t.dtype, values: new Float64Array(t.size), known: new Uint8Array(t.size) },
              offset: 0,
              size: t.size,
              disposed: false,
            });
          break;
        }
        case "from": {
          const shapeOk = validShape(op.shape) && count(op.shape) <= 4096;
          if (validShape(op.shape) && !shapeOk) break;
          const n = shapeOk ? count(op.shape as number[]) : 4;
          const data = makeData(op.data, n);
          const o = op.options as { dtype?: unknown; device?: unknown } | undefined;
          const optionsOk =
            o === undefined ||
            (typeof o === "object" &&
              o !== null &&
              (o.dtype == null || dtypes.includes(o.dtype as string)) &&
              (o.device == null || o.device === "cpu"));
          const tag = Object.prototype.toString.call(data);
          const natural = tag === "[object Float32Array]" ? "f32" : tag === "[object Int32Array]" ? "i32" : undefined;
          const dtype = (o && typeof o === "object" ? (o.dtype as DType | null | undefined) : undefined) ?? natural;
          const want = dtype && optionsOk ? expectedValues(data, dtype) : undefined;
          const valid = shapeOk && optionsOk && want !== undefined && want.length === n;
          const label = `${what}(${op.data.kind} data of ${(data as { length?: number })?.length} elements, ${describe(op.shape)}, ${describe(op.options)})`;
          const t = await must(valid, () => Tensor.from(data as Float32Array, op.shape as number[], op.options as never), label);
          if (t) {
            const m: Model = {
              tensor: t,
              storage: { dtype: t.dtype, values: new Float64Array(n), known: new Uint8Array(n) },
              offset: 0,
              size: n,
              disposed: false,
            };
            store(m, want!);
            live.push(m);
            checkContents(m, t.toFloat32Array(), label, true);
          }
          break;
        }
        case "write": {
          const m = pick(op.target);
          if (!m || m.size > bigElements) break;
          const data = makeData(op.data, m.size);
          const want = expectedValues(data, m.storage.dtype);
          const valid = !m.disposed && want !== undefined && want.length === m.size;
          const label = `${what}(${op.data.kind} data of ${(data as { length?: number })?.length} elements) into ${m.tensor}`;
          const r = await must(
            valid,
            () => {
              m.tensor.write(data as Float32Array);
              return true;
            },
            label,
          );
          if (r) store(m, want!);
          break;
        }
        case "read": {
          const m = pick(op.target);
          if (!m || m.size > bigElements) break;
          const label = `${what} ${op.how} of ${m.tensor}`;
          const got = await must(
            !m.disposed,
            () => (op.how === "toArray" ? m.tensor.toArray() : op.how === "view" ? m.tensor.view() : m.tensor.toFloat32Array()),
            label,
          );
          if (got) checkContents(m, got as ArrayLike<number>, label, op.how === "toFloat32Array");
          break;
        }
        case "viewWrite": {
          const m = pick(op.target);
          if (!m || m.size > bigElements || m.storage.dtype !== "f32") break;
          const view = await must(!m.disposed, () => m.tensor.view() as Float32Array, `${what} of ${m.tensor}`);
          if (!view) break;
          const v = Float32Array.from(values(op.seed, m.size));
          view.set(v);
          store(m, v);
          checkContents(m, m.tensor.toFloat32Array(), `${what}: writes through view() must show in the tensor`, true);
          break;
        }
        case "reshape": {
          const m = pick(op.target);
          if (!m) break;
          const valid = !m.disposed && validShape(op.shape) && count(op.shape) === m.size;
          const t = await must(valid, () => m.tensor.reshape(op.shape as number[]), `${what}(${describe(op.shape)}) of ${m.tensor}`);
          if (t) live.push({ ...m, tensor: t, disposed: false });
          break;
        }
        case "rows": {
          const m = pick(op.target);
          if (!m) break;
          const rows = m.tensor.shape[0],
            start = op.start as number,
            n = op.count as number;
          const valid = !m.disposed && Number.isInteger(start) && Number.isInteger(n) && start >= 0 && n >= 1 && start + n <= rows;
          const t = await must(valid, () => m.tensor.rows(start, n), `${what}(${describe(start)}, ${describe(n)}) of ${m.tensor}`);
          if (t)
            live.push({
              tensor: t,
              storage: m.storage,
              offset: m.offset + start * (m.size / rows),
              size: n * (m.size / rows),
              disposed: false,
            });
          break;
        }
        case "copyFrom": {
          const m = pick(op.target),
            s = pick(op.source);
          if (!m || !s || m.size > bigElements || s.size > bigElements) break;
          // Overlapping windows of one storage have no defined result.
          if (m.storage === s.storage && m.offset < s.offset + s.size && s.offset < m.offset + m.size && m !== s) break;
          const valid = !m.disposed && !s.disposed && m.storage.dtype === s.storage.dtype && m.size === s.size;
          const snapshot = Array.from({ length: s.size }, (_, i) => s.storage.values[s.offset + i]);
          const knownSnapshot = Array.from({ length: s.size }, (_, i) => s.storage.known[s.offset + i]);
          const r = await must(
            valid,
            () => {
              m.tensor.copyFrom(s.tensor);
              return true;
            },
            `${what} ${s.tensor} into ${m.tensor}`,
          );
          if (r)
            for (let i = 0; i < m.size; i++) {
              m.storage.values[m.offset + i] = snapshot[i];
              m.storage.known[m.offset + i] = knownSnapshot[i];
            }
          break;
        }
        case "to": {
          const m = pick(op.target);
          if (!m || m.size > bigElements) break;
          const valid = !m.disposed && op.device === "cpu";
          const t = await must(valid, () => m.tensor.to(op.device as never), `${what}(${describe(op.device)}) of ${m.tensor}`);
          if (t) {
            const copy: Model = {
              tensor: t,
              storage: {
                dtype: m.storage.dtype,
                values: m.storage.values.slice(m.offset, m.offset + m.size),
                known: m.storage.known.slice(m.offset, m.offset + m.size),
              },
              offset: 0,
              size: m.size,
              disposed: false,
            };
            live.push(copy);
            checkContents(copy, t.toFloat32Array(), `${what} copy`, true);
          }
          break;
        }
        case "dispose": {
          const m = pick(op.target);
          if (!m) break;
          m.tensor.dispose();
          m.disposed = true;
          if (!m.tensor.disposed || m.tensor.bytes !== 0)
            fail(`${what}: after dispose() the tensor says disposed=${m.tensor.disposed}, bytes=${m.tensor.bytes}`);
          break;
        }
        case "sliceHandle": {
          const m = pick(op.target);
          if (!m) break;
          const offset = op.offset as number,
            dims = op.dims as number[];
          const valid =
            !m.disposed &&
            Number.isInteger(offset) &&
            offset >= 0 &&
            validShape(dims) &&
            offset + count(dims) <= m.size &&
            count(dims) <= 2 ** 53;
          const handle = m.tensor.handle as unknown as { slice(o: unknown, d: unknown): { bytes: number; dispose(): void } };
          const label = `${what}(${describe(offset)}, ${describe(dims)}) of the handle of ${m.tensor}`;
          const h = await must(valid, () => handle.slice(offset, dims), label);
          if (h) {
            extraHandles.push(h);
            const bytesPer = m.storage.dtype === "f32" || m.storage.dtype === "i32" ? 4 : 2;
            if (h.bytes !== count(dims) * bytesPer) fail(`${label}: the slice reports ${h.bytes} bytes for ${count(dims)} elements`);
          }
          break;
        }
        case "bigView": {
          // More than 4 GiB of address space, never touched: view() must give a view of it all or a useful Error.
          const elements = (op.dtype === "bf16" ? 2 ** 31 : 2 ** 30) + op.extra;
          const label = `${what} of a ${op.dtype} tensor of ${elements} elements (over 4 GiB)`;
          const made = await attempt(() => Tensor.empty([elements], op.dtype));
          if (!made.ok) {
            expectUsefulError(made.error, label);
            break;
          }
          try {
            const view = await attempt(() => made.value.view());
            if (!view.ok) expectUsefulError(view.error, label);
            else if (view.value.length !== elements) fail(`${label}: the view has ${view.value.length} elements`);
          } finally {
            made.value.dispose();
          }
          break;
        }
      }
    }
  } finally {
    for (const h of extraHandles) h.dispose();
    for (const m of live) m.tensor.dispose();
  }
  await expectMemoryBack(before, "tensor program");
}
