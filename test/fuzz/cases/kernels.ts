// Child side of the kernel fuzz: one valid call of an exported kernel, one thing about it
// mutated, and the kernel's answer judged against the unmutated call's result.
import { loadAddon, Tensor } from "../../../lib";
import { Random } from "../../helpers/reference";
import { attempt, expectMemoryBack, expectUsefulError, fail, liveCpuBytes, sameBytes } from "../harness/checks";
import { type ArgSpec, type BuiltCall, builders, type FloatDType, Maker, type NumberSpec, optionsOf } from "./kernel-builders";

/** Out-of-range contents for an index tensor, relative to its valid range [lo, hi]. */
export type IndexValue = { side: "above" | "below"; by: number } | { side: "extreme"; which: number };

export type KernelMutation =
  | { kind: "none" }
  | { kind: "omitOutputs" }
  | { kind: "shape"; pick: number; dim: number; delta: number; rank: -1 | 0 | 1 }
  | { kind: "dtype"; pick: number; dtype: "f32" | "f16" | "bf16" | "i32" }
  | { kind: "disposed"; pick: number }
  | { kind: "notTensor"; pick: number; value: unknown }
  | { kind: "rank0"; pick: number }
  | { kind: "index"; pick: number; position: number; value: IndexValue }
  | { kind: "number"; pick: number; value: unknown }
  | { kind: "getter"; pick: number; behaviour: "throws" | "disposes" | "flips"; victim: number }
  | { kind: "options"; value: unknown }
  | { kind: "clamp"; sinkOver: number; windowOver: number; which: number }
  | { kind: "afterAsync"; pick: number; action: "write" | "dispose"; value: IndexValue };

export interface KernelCase {
  kernel: string;
  seed: number;
  dtype: FloatDType;
  /** Call the TypeScript wrapper's async form where there is one. */
  async: boolean;
  mutation: KernelMutation;
}

/** reject: must throw; equal: must succeed with the unmutated result; rejectOrEqual: one of the two; any: throw or succeed. */
type Expectation = "reject" | "equal" | "rejectOrEqual" | "any";

const MAX = 2 ** 31 - 1;
const extremes = [-(2 ** 31), MAX, 1 << 30, -(1 << 30), 1 << 20];

function build(c: KernelCase): { m: Maker; b: BuiltCall } {
  const m = new Maker(new Random(c.seed));
  return { m, b: builders[c.kernel](m, c.dtype) };
}

function snapshot(tensors: Tensor[]): ArrayBufferView[] {
  return tensors.map((t) => t.toArray());
}

function outOfRange(range: { lo: number; hi: number }, v: IndexValue): number {
  if (v.side === "extreme") return extremes[v.which % extremes.length];
  return v.side === "above" ? Math.min(MAX, range.hi + 1 + v.by) : Math.max(-(2 ** 31), range.lo - 1 - v.by);
}

function isAbsent(v: unknown): boolean {
  return v === undefined || v === null;
}

function validNumber(spec: NumberSpec, v: unknown, settings: Record<string, unknown>): boolean {
  if (isAbsent(v)) return !spec.required;
  if (spec.kind === "dtype") return v === "f32" || v === "f16" || v === "bf16";
  if (typeof v !== "number") return false;
  if (spec.kind === "positive") return Number.isFinite(v) && v > 0;
  const min = spec.path[0] === "capacity" ? Math.max(1, settings.k as number) : spec.min!;
  return Number.isInteger(v) && v >= min && v <= spec.max!;
}

function parentOf(o: Record<string, unknown>, path: string[]): Record<string, unknown> | undefined {
  let at: unknown = o;
  for (const key of path.slice(0, -1)) at = (at as Record<string, unknown> | undefined)?.[key];
  return at && typeof at === "object" ? (at as Record<string, unknown>) : undefined;
}

function replacement(m: Maker, _original: Tensor, shape: number[], dtype: Tensor["dtype"], range?: { lo: number; hi: number }): Tensor {
  if (dtype === "i32" && range)
    return m.ints(
      Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => m.rng.int(Math.max(range.lo, 0), Math.max(range.hi, 0))),
      shape,
    );
  return m.floats(shape, dtype);
}

/** The unmutated call's observed tensors, or of the call with `adjust` applied to its options. */
async function expectedResult(
  c: KernelCase,
  adjust?: (o: Record<string, unknown>, m: Maker, b: BuiltCall) => void,
): Promise<ArrayBufferView[]> {
  const { m, b } = build(c);
  try {
    const o = optionsOf(b);
    adjust?.(o, m, b);
    const observed = b.call(o);
    const bytes = snapshot(observed);
    for (const t of observed) if (!m.made.includes(t)) t.dispose();
    return bytes;
  } finally {
    m.disposeAll();
  }
}

function clampAdjust(c: KernelCase, huge: boolean) {
  const mu = c.mutation as Extract<KernelMutation, { kind: "clamp" }>;
  return (o: Record<string, unknown>, m: Maker, b: BuiltCall) => {
    const span = c.kernel === "cutToStreaming" ? (o.length as number) : b.tensors.k.shape[0];
    // One of the two reaches past everything there is (which = 0: the sink, 1: the window, 2: both);
    // a window is at least 1 even past an empty sequence.
    const sink = mu.which !== 1 ? Math.min(MAX, span + mu.sinkOver) : m.rng.int(0, 2);
    const window = mu.which !== 0 ? Math.min(MAX, Math.max(1, span + mu.windowOver)) : m.rng.int(1, 3);
    const s = huge ? sink : Math.min(sink, span),
      w = huge ? window : Math.max(1, Math.min(window, span));
    if (c.kernel === "prefillAttention") o.streaming = { sink: s, window: w };
    else if (c.kernel === "lazyRatio") Object.assign(o, { sink: s, window: w });
    else {
      Object.assign(o, { sink: s, window: w });
      const pageSize = b.tensors.kPages.shape[1];
      const ring = Math.min(o.length as number, s + w);
      const src = Array.from(b.tensors.srcPageTable.toArray() as Int32Array);
      o.dstPageTable = m.ints(src.slice(0, Math.max(1, Math.ceil(ring / pageSize))));
    }
  };
}

export async function runCase(c: KernelCase): Promise<void> {
  const before = await liveCpuBytes();
  let mu = c.mutation;
  const probe = build(c);
  const spec = probe.b;
  const indexArgs = spec.args.filter((a) => a.index);
  const asyncNative =
    spec.native && (loadAddon() as unknown as Record<string, unknown>)[`${spec.native.name}Async`] ? spec.native : undefined;
  const hasClamp = ["prefillAttention", "lazyRatio", "cutToStreaming"].includes(c.kernel);
  probe.m.disposeAll();
  // Mutations a kernel has nothing for fall back to the plain call.
  if (
    (mu.kind === "index" && !indexArgs.length) ||
    (mu.kind === "number" && !spec.numbers.length) ||
    (mu.kind === "rank0" && !spec.native) ||
    (mu.kind === "clamp" && !hasClamp) ||
    (mu.kind === "afterAsync" && !asyncNative)
  )
    mu = { kind: "none" };

  const expected = await expectedResult(c, mu.kind === "clamp" ? clampAdjust(c, false) : undefined);
  const { m, b } = build(c);
  const o = optionsOf(b);
  const pickArg = (pick: number, among: ArgSpec[] = b.args) => among[pick % among.length];
  let expectation: Expectation = "equal";
  let what = `${c.kernel} (${c.dtype}${c.async && b.callAsync ? ", async" : ""})`;
  /** Observed tensors not to compare (a disposed output). */
  const skip = new Set<Tensor>();
  const cleanups: Array<() => void> = [];
  let squatter: { tensor: Tensor; bytes: ArrayBufferView } | undefined;
  let call: () => Promise<Tensor[]> = async () => (c.async && b.callAsync ? b.callAsync(o) : b.call(o));

  switch (mu.kind) {
    case "none":
      break;
    case "omitOutputs":
      for (const a of b.args) if (a.output) delete o[a.name];
      if (c.kernel === "embedding") o.dtype = b.tensors.out.dtype;
      if (c.kernel === "prefillAttention" || c.kernel === "decodeAttention") o.returnLse = true;
      what += " with its outputs left to the wrapper";
      break;
    case "shape": {
      const a = pickArg(mu.pick),
        old = b.tensors[a.name];
      let shape = [...old.shape];
      if (mu.rank === 1) shape.push(1 + Math.abs(mu.delta));
      if (mu.rank === -1 && shape.length > 1) shape = [shape[0] * shape[1], ...shape.slice(2)];
      const at = mu.dim % shape.length;
      shape[at] = Math.max(1, shape[at] + mu.delta);
      if (shape.join() === old.shape.join()) shape[at] += 1;
      o[a.name] = replacement(m, old, shape, old.dtype, a.index);
      expectation = a.fixedShape ? "reject" : "any";
      what += `, ${a.name} of shape [${shape}] instead of [${old.shape}]`;
      break;
    }
    case "dtype": {
      const a = pickArg(mu.pick),
        old = b.tensors[a.name];
      const dtype = mu.dtype === old.dtype ? (old.dtype === "i32" ? "f32" : "i32") : mu.dtype;
      o[a.name] = replacement(m, old, [...old.shape], dtype, a.index);
      // A float argument that must share the call's dtype may change it when nothing else has to share it.
      const alone = a.rule === "same" && !b.args.some((other) => other !== a && other.rule === "same");
      expectation = (a.rule === "anyFloat" || alone) && dtype !== "i32" ? "any" : "reject";
      what += `, ${a.name} as ${dtype} instead of ${old.dtype}`;
      break;
    }
    case "disposed": {
      const a = pickArg(mu.pick);
      b.tensors[a.name].dispose();
      expectation = "reject";
      what += `, ${a.name} disposed before the call`;
      break;
    }
    case "notTensor": {
      const a = pickArg(mu.pick);
      o[a.name] = mu.value;
      const absent = (!mu.value && typeof mu.value !== "object") || mu.value === null;
      // A falsy value reads as "left out": the wrapper allocates the output, or (lse, the lazy
      // ratio, a bias) does without it, so only a truthy non-Tensor must be refused.
      expectation = absent && (a.output || a.optional) ? "any" : "reject";
      what += `, ${a.name} = ${describe(mu.value)} (not a Tensor)`;
      break;
    }
    case "rank0": {
      const a = pickArg(mu.pick),
        native = b.native!;
      call = async () => {
        // Refusing to make a rank-0 handle at all is as good an answer as the kernel refusing it.
        const scalar = (b.tensors[a.name].handle as unknown as { slice(o: number, s: number[]): { dispose(): void } }).slice(0, []);
        cleanups.push(() => scalar.dispose());
        const args = native.args(o);
        args[a.name === "lazyRatioOut" ? "lazyRatio" : a.name] = scalar;
        (loadAddon() as unknown as Record<string, (x: object) => void>)[native.name](args);
        return native.observe(o);
      };
      expectation = "reject";
      what += `, ${a.name} replaced by a rank-0 handle (native call)`;
      break;
    }
    case "index": {
      const a = pickArg(mu.pick, indexArgs),
        tensor = b.tensors[a.name];
      const view = tensor.view() as Int32Array;
      const at = mu.position % view.length,
        value = outOfRange(a.index!, mu.value);
      view[at] = value;
      expectation = "rejectOrEqual";
      what += `, ${a.name}[${at}] = ${value} (valid ${a.index!.lo}..${a.index!.hi})`;
      break;
    }
    case "number": {
      const n = b.numbers[mu.pick % b.numbers.length];
      const parent = parentOf(o, n.path);
      if (!parent) break;
      const key = n.path[n.path.length - 1];
      const old = parent[key];
      parent[key] = mu.value;
      const valid = validNumber(n, mu.value, b.settings);
      // A dtype goes without out (an explicit out decides the dtype): the wrapper's output then has
      // it (the table's when none is given), the same bytes only where that is the given out's.
      if (n.kind === "dtype") delete o.out;
      const same =
        n.kind === "dtype"
          ? (isAbsent(mu.value) ? b.tensors.table.dtype : mu.value) === b.tensors.out.dtype
          : Object.is(mu.value, old) || (isAbsent(mu.value) && isAbsent(old));
      expectation = valid ? (same ? "equal" : "any") : "reject";
      what += `, ${n.path.join(".")} = ${describe(mu.value)} (${valid ? "valid" : "invalid"})`;
      break;
    }
    case "getter": {
      const keys: Array<{ path: string[]; tensor?: ArgSpec }> = [
        ...b.numbers.filter((n) => parentOf(o, n.path)).map((n) => ({ path: n.path })),
        ...b.args.map((a) => ({ path: [a.name], tensor: a })),
      ];
      const k = keys[mu.pick % keys.length];
      const parent = parentOf(o, k.path)!,
        key = k.path[k.path.length - 1];
      const value = parent[key];
      let reads = 0;
      const victimArg = pickArg(mu.victim),
        victim = b.tensors[victimArg.name];
      const behaviour = mu.behaviour;
      const get = Object.assign(
        function get() {
          reads++;
          if (behaviour === "throws") throw new Error("a getter of the options threw this on purpose");
          if (behaviour === "flips") return reads === 1 ? value : k.tensor ? m.ints([MAX]) : -7;
          if (!victim.disposed) {
            const bytes = victim.toArray();
            victim.dispose();
            // Take the freed block back at once, so memory used after the free shows up as changed values.
            const filler =
              victim.dtype === "f32"
                ? new Float32Array(victim.size).fill(-123.5)
                : victim.dtype === "i32"
                  ? new Int32Array(victim.size).fill(-123)
                  : new Uint16Array(victim.size).fill(0xc2f7);
            const tensor = Tensor.from(filler, [...victim.shape], { dtype: victim.dtype });
            m.made.push(tensor);
            squatter = { tensor, bytes: tensor.toArray() };
            void bytes;
          }
          return value;
        },
        { firstValue: value },
      );
      Object.defineProperty(parent, key, { enumerable: true, configurable: true, get });
      if (behaviour === "disposes") {
        skip.add(victim);
        if (victimArg.output) expectation = "any";
        else expectation = "rejectOrEqual";
      } else expectation = "rejectOrEqual"; // a getter the call never reads changes nothing
      what += `, a getter on ${k.path.join(".")} that ${behaviour === "disposes" ? `disposes ${victimArg.name}` : behaviour === "throws" ? "throws" : "is valid on the first read only"}`;
      break;
    }
    case "options": {
      const value =
        mu.value === "proxy"
          ? new Proxy(
              {},
              {
                get() {
                  throw new Error("a proxy of options threw this on purpose");
                },
              },
            )
          : mu.value;
      call = async () => (c.async && b.callAsync ? b.callAsync(value as never) : b.call(value as never));
      expectation = "reject";
      what += `, options = ${mu.value === "proxy" ? "a Proxy that throws" : describe(mu.value)}`;
      break;
    }
    case "clamp":
      clampAdjust(c, true)(o, m, b);
      expectation = "equal";
      what += `, sink/window past the sequence (${JSON.stringify({ sink: (o.streaming as { sink?: number } | undefined)?.sink ?? o.sink, window: (o.streaming as { window?: number } | undefined)?.window ?? o.window })}), which must equal them clamped`;
      break;
    case "afterAsync": {
      const native = asyncNative!;
      const inputs = b.args.filter((a) => !a.output);
      const index = b.args.filter((a) => a.index);
      const action = mu.action === "write" && index.length ? "write" : "dispose";
      const a = action === "write" ? pickArg(mu.pick, index) : pickArg(mu.pick, inputs);
      const value = action === "write" ? outOfRange(a.index!, mu.value) : 0;
      call = async () => {
        const promise = (loadAddon() as unknown as Record<string, (x: object) => Promise<void>>)[`${native.name}Async`](native.args(o));
        if (action === "write") b.tensors[a.name].write(new Int32Array(b.tensors[a.name].size).fill(value));
        else {
          b.tensors[a.name].dispose();
          skip.add(b.tensors[a.name]);
        }
        await promise;
        return native.observe(o);
      };
      expectation = "rejectOrEqual";
      what +=
        action === "write"
          ? `, native async call, then ${a.name} overwritten with ${value}`
          : `, native async call, then ${a.name} disposed`;
      break;
    }
  }

  try {
    const outcome = await attempt(call);
    if (!outcome.ok) {
      if (expectation === "equal")
        fail(`${what}: a valid call threw: ${outcome.error instanceof Error ? outcome.error.message : String(outcome.error)}`);
      expectUsefulError(outcome.error, what);
    } else {
      const observed = outcome.value;
      try {
        if (expectation === "reject") fail(`${what}: accepted, but it must throw an Error`);
        if (expectation === "equal" || expectation === "rejectOrEqual") {
          if (observed.length !== expected.length) fail(`${what}: ${observed.length} results instead of ${expected.length}`);
          observed.forEach((t, i) => {
            if (skip.has(t)) return;
            if (!sameBytes(t.toArray(), expected[i])) fail(`${what}: result ${i} differs from the unmutated call's (silently wrong)`);
          });
        }
      } finally {
        for (const t of observed) if (t instanceof Tensor && !m.made.includes(t) && !Object.values(b.tensors).includes(t)) t.dispose();
      }
    }
    if (squatter && !sameBytes(squatter.tensor.toArray(), squatter.bytes))
      fail(`${what}: the kernel wrote into memory freed by the getter (a tensor allocated there since changed)`);
  } finally {
    for (const cleanup of cleanups) cleanup();
    m.disposeAll();
    for (const d of Object.values(Object.getOwnPropertyDescriptors(o)))
      if (d.value instanceof Tensor && !m.made.includes(d.value)) d.value.dispose();
  }
  await expectMemoryBack(before, what);
}

function describe(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  if (v === undefined) return "undefined";
  try {
    return JSON.stringify(v)?.slice(0, 80) ?? String(v);
  } catch {
    return String(v);
  }
}
