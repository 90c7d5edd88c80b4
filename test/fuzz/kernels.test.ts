// Every exported kernel, called with one thing wrong: a shape, a dtype, a disposed or missing
// tensor, a rank-0 handle, an out-of-range index, an odd option value, an option getter with side
// effects, a broken options object, an index tensor overwritten (or an input disposed) right
// after an async call was issued. Each answer must be a useful Error or the correct result
// (the unmutated call's); a crash or a hang fails the case in its child process.
import * as path from "node:path";
import fc from "fast-check";
import { Random } from "../helpers/reference";
import type { HugeCase } from "./cases/huge";
import { builders, kernelNames, Maker } from "./cases/kernel-builders";
import type { IndexValue, KernelCase, KernelMutation } from "./cases/kernels";
import { enumeratedTest, propertyTest } from "./harness/run-cases";
import { notATensor, oddValue } from "./harness/values";

const indexValue: fc.Arbitrary<IndexValue> = fc.oneof(
  fc.record({ side: fc.constantFrom("above" as const, "below" as const), by: fc.oneof(fc.nat(4), fc.constantFrom(1 << 20, 2 ** 30)) }),
  fc.record({ side: fc.constant("extreme" as const), which: fc.nat(4) }),
);

const pick = fc.nat(64);
const mutation: fc.Arbitrary<KernelMutation> = fc.oneof(
  fc.constant({ kind: "none" as const }),
  fc.constant({ kind: "omitOutputs" as const }),
  fc.record({
    kind: fc.constant("shape" as const),
    pick,
    dim: fc.nat(3),
    delta: fc.integer({ min: -3, max: 3 }),
    rank: fc.constantFrom(-1 as const, 0 as const, 1 as const),
  }),
  fc.record({
    kind: fc.constant("dtype" as const),
    pick,
    dtype: fc.constantFrom("f32" as const, "f16" as const, "bf16" as const, "i32" as const),
  }),
  fc.record({ kind: fc.constant("disposed" as const), pick }),
  fc.record({ kind: fc.constant("notTensor" as const), pick, value: notATensor }),
  fc.record({ kind: fc.constant("rank0" as const), pick }),
  fc.record({ kind: fc.constant("index" as const), pick, position: fc.nat(16), value: indexValue }),
  fc.record({ kind: fc.constant("number" as const), pick, value: oddValue }),
  fc.record({
    kind: fc.constant("getter" as const),
    pick,
    behaviour: fc.constantFrom("throws" as const, "disposes" as const, "flips" as const),
    victim: pick,
  }),
  fc.record({ kind: fc.constant("options" as const), value: fc.constantFrom(null, undefined, 42, "options", [], "proxy", true) }),
  fc.record({
    kind: fc.constant("clamp" as const),
    sinkOver: fc.oneof(fc.nat(8), fc.constantFrom(2 ** 31 - 1, 2 ** 31 - 16, 2 ** 30)),
    windowOver: fc.oneof(fc.nat(8), fc.constantFrom(2 ** 31 - 1, 2 ** 31 - 16, 2 ** 30)),
    which: fc.nat(2),
  }),
  fc.record({
    kind: fc.constant("afterAsync" as const),
    pick,
    action: fc.constantFrom("write" as const, "dispose" as const),
    value: indexValue,
  }),
);

const kernelCase: fc.Arbitrary<KernelCase> = fc.record({
  kernel: fc.constantFrom(...kernelNames),
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  dtype: fc.constantFrom("f32" as const, "bf16" as const, "f16" as const),
  async: fc.boolean(),
  mutation,
});

const kernelsModule = path.join(__dirname, "cases", "kernels.ts");
propertyTest("kernels answer every malformed call with a useful Error or the correct result", "kernel", kernelCase, 0, 400, {
  modulePath: kernelsModule,
  batchSize: 150,
  caseTimeoutMs: 20000,
});

/**
 * Every option a kernel reads, as a getter that disposes each of the call's tensors in turn:
 * the call must refuse the disposed tensor or compute with what it was given, whenever the
 * getter runs. Enumerated rather than drawn, because each kernel has only a few such pairs.
 */
function getterSweep(): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const kernel of kernelNames) {
    for (let seed = 1; seed < 500; seed++) {
      const m = new Maker(new Random(seed));
      const built = builders[kernel](m, "f32");
      m.disposeAll();
      // Every optional setting present (the prefill's streaming mask and lazy ratio), so every option is there to read.
      if (kernel === "prefillAttention" && !(built.settings.streaming && built.settings.lazyRatio)) continue;
      for (let pick = 0; pick < built.numbers.length; pick++)
        for (let victim = 0; victim < built.args.length; victim++)
          cases.push({ kernel, seed, dtype: "f32", async: false, mutation: { kind: "getter", pick, behaviour: "disposes", victim } });
      break;
    }
  }
  return cases;
}

enumeratedTest(
  "option getters that dispose any tensor of the call, for every option of every kernel",
  "option getter",
  getterSweep,
  { modulePath: kernelsModule, batchSize: 200, caseTimeoutMs: 20000 },
  600000,
);

enumeratedTest(
  "a kernel over more than 2^31 elements answers right or with a useful Error",
  "over 2^31 elements",
  (): HugeCase[] => [{ kernel: "argmax", extra: 16, plantedPast: 5 }],
  { modulePath: path.join(__dirname, "cases", "huge.ts"), batchSize: 1, caseTimeoutMs: 120000 },
  300000,
);
