// Defect: Tensor.from refused a SharedArrayBuffer-backed array with "Invalid argument".
import { Tensor } from "../../lib";
import { Random } from "../helpers/reference";

test("Tensor.from and write() copy arrays backed by a SharedArrayBuffer", () => {
  const rng = new Random();
  const floats = new Float32Array(new SharedArrayBuffer(4 * 40), 4 * 8, 24);
  for (let i = 0; i < floats.length; i++) floats[i] = rng.normal();
  const t = Tensor.from(floats, [4, 6]);
  expect(Array.from(t.toArray())).toEqual(Array.from(floats));
  floats[0] += 1;
  expect(t.toArray()[0]).not.toBe(floats[0]); // a copy, not a view
  const ints = new Int32Array(new SharedArrayBuffer(4 * 5)).map(() => rng.int(1, 1000));
  t.dispose();
  const i = Tensor.from(ints, [5]);
  expect(Array.from(i.toArray())).toEqual(Array.from(ints));
  // A Float32Array into bf16 is rounded on the way in, the same from shared memory as from private.
  const shared = new Float32Array(new SharedArrayBuffer(20)).map(() => rng.normal());
  const bits = Tensor.empty([5], "bf16");
  bits.write(shared);
  const reference = Tensor.from(Float32Array.from(shared), [5], { dtype: "bf16" });
  expect(Array.from(bits.toArray())).toEqual(Array.from(reference.toArray()));
  for (const x of [i, bits, reference]) x.dispose();
});
