// The benchmark scripts' command-line options: `--name value` pairs after the script's name.

/**
 * The value after `--name`, or `fallback`; without a fallback the option is required.
 * @example const steps = Number(option("steps", "12"));
 */
export function option(name: string, fallback?: string): string {
  const value = optionalOption(name);
  if (value !== undefined) return value;
  if (fallback === undefined) throw new Error(`--${name} is required`);
  return fallback;
}

/**
 * The value after `--name`, or undefined when it is not given.
 * @example const out = optionalOption("out");
 */
export function optionalOption(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`, 2);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/**
 * A comma-separated list of numbers after `--name`, or `fallback`'s.
 * @example const contexts = numberList("contexts", "4096,16384");
 */
export function numberList(name: string, fallback: string): number[] {
  return option(name, fallback).split(",").map(Number);
}
