// Tensor calls with odd arguments among good ones (shapes, dtypes, devices, data of the wrong
// kind or length, SharedArrayBuffer- and detached-buffer arrays, rows and reshapes out of range,
// disposed tensors, slices of the exported native handle with huge dims, views over 4 GiB),
// checked against a model of what every tensor and every view of it must hold.
import * as path from "node:path";
import fc from "fast-check";
import type { DataSpec, TensorCase, TensorOp } from "./cases/tensor";
import { enumeratedTest, propertyTest } from "./harness/run-cases";
import { oddNumber, oddValue } from "./harness/values";

const smallShape = fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 });
const shape = fc.oneof(
  smallShape,
  smallShape,
  smallShape,
  fc.constantFrom(
    [],
    [0],
    [-1],
    [1.5],
    [NaN],
    ["2"],
    [2 ** 31],
    [2 ** 40, 2 ** 40],
    [2 ** 53],
    [2 ** 20, 2 ** 12],
    "3",
    null,
    [[2]],
    [Infinity],
  ),
);
const dtype = fc.oneof(fc.constantFrom("f32", "f16", "bf16", "i32", "i32", "f32"), fc.constantFrom("F32", "f64", "", null, undefined, 3));
const device = fc.oneof(
  fc.constantFrom("cpu", "cpu", "cpu", undefined),
  fc.constantFrom("cuda", "cuda:0", "cuda:1e3", "cuda:-1", "gpu", "CPU", "", null, 0),
);
const data: fc.Arbitrary<DataSpec> = fc.record({
  kind: fc.constantFrom("f32", "f32", "i32", "u16", "f64", "u8", "sharedF32", "sharedI32", "detached", "array", "odd") as fc.Arbitrary<
    DataSpec["kind"]
  >,
  lengthDelta: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: -2, max: 2 })),
  seed: fc.nat(),
  odd: oddValue,
});
const at = fc.nat(7);
const op: fc.Arbitrary<TensorOp> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("empty" as const), shape, dtype, device }), weight: 2 },
  {
    arbitrary: fc.record({
      op: fc.constant("from" as const),
      data,
      shape,
      options: fc.oneof(fc.record({ dtype, device }, { requiredKeys: [] }), fc.constantFrom(undefined, null, "f32", 3)),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ op: fc.constant("write" as const), target: at, data }), weight: 2 },
  {
    arbitrary: fc.record({
      op: fc.constant("read" as const),
      target: at,
      how: fc.constantFrom("toArray" as const, "toFloat32Array" as const, "view" as const),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ op: fc.constant("viewWrite" as const), target: at, seed: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("reshape" as const), target: at, shape }), weight: 2 },
  {
    arbitrary: fc.record({
      op: fc.constant("rows" as const),
      target: at,
      start: fc.oneof(fc.nat(4), oddNumber),
      count: fc.oneof(fc.integer({ min: 1, max: 3 }), oddNumber),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ op: fc.constant("copyFrom" as const), target: at, source: at }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("to" as const), target: at, device }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("dispose" as const), target: at }), weight: 2 },
  {
    arbitrary: fc.record({
      op: fc.constant("sliceHandle" as const),
      target: at,
      offset: fc.oneof(fc.nat(6), oddNumber),
      dims: fc.oneof(
        smallShape,
        fc.constantFrom([2 ** 32, 2 ** 32], [2 ** 31, 2 ** 31, 4], [2 ** 62], [2 ** 21, 2 ** 21, 2 ** 21], [0], [], [-2]),
      ),
    }),
    weight: 2,
  },
);
const tensorCase: fc.Arbitrary<TensorCase> = fc.record({ ops: fc.array(op, { minLength: 1, maxLength: 8 }) });

const modulePath = path.join(__dirname, "cases", "tensor.ts");
propertyTest("Tensor calls do what the model of their memory says, or throw a useful Error", "tensor", tensorCase, 6, 400, {
  modulePath,
  batchSize: 100,
  caseTimeoutMs: 20000,
});

// Address space only: the memory is never touched.
enumeratedTest(
  "view() of a tensor over 4 GiB gives a view of all of it or a useful Error",
  "view over 4 GiB",
  (): TensorCase[] => (["f32", "i32", "bf16"] as const).map((dtype, i) => ({ ops: [{ op: "bigView", dtype, extra: 1 + i }] })),
  { modulePath, batchSize: 3, caseTimeoutMs: 20000 },
  120000,
);
