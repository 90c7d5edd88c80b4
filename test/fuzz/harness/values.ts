// fast-check arbitraries of the odd values a careless or hostile caller passes where a number,
// a string or an object belongs.
import fc from "fast-check";

/** Numbers at the edges: NaN, infinities, -0, fractions, int32 and 2^53 bounds, denormals. */
export const oddNumber = fc.oneof(
  fc.constantFrom(
    NaN,
    Infinity,
    -Infinity,
    -0,
    0,
    -1,
    0.5,
    1.5,
    2 ** 31,
    2 ** 31 - 1,
    -(2 ** 31),
    2 ** 32 + 5,
    2 ** 53,
    2 ** 53 + 2,
    1e308,
    -1e308,
    Number.MIN_VALUE,
    Number.EPSILON,
    1e-300,
  ),
  fc.integer({ min: -5, max: 64 }),
  fc.double(),
);

/** Anything that is not a plain number: strings, booleans, null, undefined, arrays, objects, BigInts. */
export const notANumber = fc.oneof(
  fc.constantFrom("4", "", "NaN", "0x10", " 7 ", null, undefined, true, false, [], [4], {}, { valueOf: 4 }),
  fc.string({ maxLength: 6 }),
  fc.bigInt({ min: -5n, max: 2n ** 64n }),
);

export const oddValue = fc.oneof(oddNumber, notANumber);

/** Values that are not Tensors, for a tensor argument. */
export const notATensor = fc.oneof(
  fc.constantFrom(
    null,
    undefined,
    0,
    1,
    "",
    "tensor",
    true,
    false,
    [],
    [1, 2],
    {},
    { handle: {} },
    { shape: [1], dtype: "f32", device: "cpu" },
  ),
  oddNumber,
);
