// parseByteSize: the memory sizes the CLI and the benchmarks take.
import { parseByteSize } from "../lib/common/byte-size";
import { Random } from "./helpers/reference";

const rng = new Random();

describe(`seed ${rng.seed}`, () => {
  test("plain numbers, decimal and binary units, any case", () => {
    const n = rng.int(1, 1000);
    expect(parseByteSize(String(n))).toBe(n);
    expect(parseByteSize("1e9")).toBe(1e9);
    expect(parseByteSize(`${n}GB`)).toBe(n * 1e9);
    expect(parseByteSize(`${n} gib`)).toBe(n * 2 ** 30);
    expect(parseByteSize("1.5MiB")).toBe(1.5 * 2 ** 20);
    expect(parseByteSize(`${n}k`)).toBe(n * 1e3);
    expect(parseByteSize(`${n}TiB`)).toBe(n * 2 ** 40);
  });

  test("anything else is a RangeError that says what was wrong", () => {
    expect(() => parseByteSize("lots")).toThrow(/not a size: lots/);
    expect(() => parseByteSize("-5")).toThrow(/not a size: -5/);
    expect(() => parseByteSize("5QB")).toThrow(/not a size: 5QB/);
    expect(() => parseByteSize("5gi")).toThrow(/unknown unit in 5gi/);
  });
});
