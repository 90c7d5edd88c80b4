// The benchmark scripts' option parsing: a mistyped option or value is an error with the usage,
// never a silently defaulted run.
import { readArgs } from "../bench/args";
import { Random } from "./helpers/reference";

const rng = new Random();
const usage = "bench MODEL_DIR [--steps 24] [--contexts 4096,16384] [--out FILE]";
const defaults = { steps: "24", contexts: "4096,16384", out: undefined, model: undefined };
const read = (argv: string[]) => readArgs(usage, defaults, { positional: true, argv });

describe(`seed ${rng.seed}`, () => {
  test("given values win over the defaults, wherever the model directory stands", () => {
    const steps = rng.int(1, 1000);
    const contexts = [rng.int(1, 1 << 20), rng.int(1, 1 << 20)];
    const args = read(["--steps", String(steps), "/models/x", "--contexts", contexts.join(",")]);
    expect(args.positional).toBe("/models/x");
    expect(args.number("steps", { integer: true, min: 1 })).toBe(steps);
    expect(args.numbers("contexts", { integer: true, min: 1 })).toEqual(contexts);
    expect(args.optional("out")).toBeUndefined();
    const defaulted = read([]);
    expect(defaulted.number("steps")).toBe(24);
    expect(defaulted.numbers("contexts")).toEqual([4096, 16384]);
    expect(defaulted.positional).toBeUndefined();
  });

  test("an unknown option, a missing value, a second directory or a stray flag style is refused with the usage", () => {
    for (const argv of [["--step", "12"], ["--steps"], ["a", "b"], ["-s", "3"]])
      expect(() => read(argv)).toThrow(new RegExp(`\\nusage: ${usage.replace(/[[\]]/g, "\\$&")}$`));
    expect(() => read(["--stpes", "3"])).toThrow(/Unknown option '--stpes'/);
  });

  test("--help or -h anywhere hands over the usage instead of parsing (the scripts print it and exit)", () => {
    for (const argv of [["--help"], ["/models/x", "-h"], ["--stpes", "3", "--help"]]) {
      const help = jest.fn((shown: string): never => {
        throw new Error(`help: ${shown}`);
      });
      expect(() => readArgs(usage, defaults, { positional: true, argv, help })).toThrow(`help: ${usage}`);
      expect(help).toHaveBeenCalledTimes(1);
    }
  });

  test("a value that is not the number asked for names the option, what it takes and what it got", () => {
    const nonNumbers = ["12x", "", "1e999", "NaN", "0x"];
    const bad = nonNumbers[rng.int(0, nonNumbers.length - 1)];
    expect(() => read(["--steps", bad]).number("steps")).toThrow(`--steps takes numbers, got ${JSON.stringify(bad)}`);
    expect(() => read(["--steps", "2.5"]).number("steps", { integer: true })).toThrow('--steps takes integers, got "2.5"');
    expect(() => read(["--steps", "0"]).number("steps", { integer: true, min: 1 })).toThrow('--steps takes integers >= 1, got "0"');
    expect(() => read(["--contexts", "4096,,8"]).numbers("contexts", { integer: true })).toThrow('--contexts takes integers, got ""');
    expect(() => read(["--steps", "2"]).number("steps", { min: 0, max: 1 })).toThrow('--steps takes numbers >= 0 and <= 1, got "2"');
  });

  test("a required option that is not given, and an option the script reads without declaring, are errors", () => {
    expect(() => read([]).text("model")).toThrow(/--model is required\nusage:/);
    expect(() => read([]).text("warmup")).toThrow("the script reads --warmup but does not declare it");
  });
});
