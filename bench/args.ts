// The benchmark scripts' command-line options: `--name value` pairs, and a model directory for the
// scripts that take one. A name the script does not know, a missing value or a value that is not
// the number asked for is an error that shows the usage, not a default silently run.
import { parseArgs } from "node:util";

/** How a number option is checked: an integer or any finite number, and the range allowed. */
export interface NumberRule {
  integer?: boolean;
  min?: number;
  max?: number;
}

/** A benchmark's parsed options; each getter checks the value it returns. */
export interface BenchArgs {
  /** The positional argument (the model directory), when the script takes one. */
  readonly positional: string | undefined;
  /** The value of `--name`, or its default; an option without a default that is not given is an error. */
  text(name: string): string;
  /** The value of `--name`, or undefined when it is neither given nor defaulted. */
  optional(name: string): string | undefined;
  /** `--name` as a number that meets `rule`. */
  number(name: string, rule?: NumberRule): number;
  /** `--name` as a comma-separated list of numbers, each meeting `rule`. */
  numbers(name: string, rule?: NumberRule): number[];
}

/** What `--help` (or `-h`) does by default: the usage on stdout, and the script ends. */
const printUsage = (usage: string): never => {
  console.log(`usage: ${usage}`);
  process.exit(0);
};

/**
 * Parses `process.argv` against the options a script knows (each with its default, or undefined);
 * `--help` or `-h` anywhere calls `help` with the usage instead (by default: prints it and exits).
 * @example
 * const args = readArgs("node dist/bench/prefill.js MODEL_DIR [--prompts 8]", { prompts: "8" }, { positional: true });
 * const prompts = args.number("prompts", { integer: true, min: 1 });
 */
export function readArgs(
  usage: string,
  defaults: Record<string, string | undefined>,
  {
    positional = false,
    argv = process.argv.slice(2),
    help = printUsage,
  }: { positional?: boolean; argv?: string[]; help?: (usage: string) => never } = {},
): BenchArgs {
  if (argv.includes("--help") || argv.includes("-h")) help(usage);
  const fail = (message: string): never => {
    throw new Error(`${message}\nusage: ${usage}`);
  };
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] } = { values: {}, positionals: [] };
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.keys(defaults).map((name) => [name, { type: "string" as const }])),
      strict: true,
      allowPositionals: positional,
    });
  } catch (err) {
    fail((err as Error).message);
  }
  if (parsed.positionals.length > 1) fail(`one model directory expected, got ${parsed.positionals.join(" ")}`);
  const values: Record<string, string | undefined> = { ...defaults };
  for (const [name, value] of Object.entries(parsed.values)) if (typeof value === "string") values[name] = value;
  const known = (name: string) => {
    if (!(name in defaults)) throw new Error(`the script reads --${name} but does not declare it`);
    return values[name];
  };
  const toNumber = (name: string, text: string, { integer = false, min = -Infinity, max = Infinity }: NumberRule) => {
    const n = text.trim() === "" ? Number.NaN : Number(text);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
      const range = [min > -Infinity ? ` >= ${min}` : "", max < Infinity ? ` <= ${max}` : ""].filter(Boolean).join(" and");
      fail(`--${name} takes ${integer ? "integers" : "numbers"}${range}, got ${JSON.stringify(text)}`);
    }
    return n;
  };
  const text = (name: string) => known(name) ?? fail(`--${name} is required`);
  return {
    positional: parsed.positionals[0],
    text,
    optional: known,
    number: (name, rule = {}) => toNumber(name, text(name), rule),
    numbers: (name, rule = {}) =>
      text(name)
        .split(",")
        .map((part) => toNumber(name, part, rule)),
  };
}
