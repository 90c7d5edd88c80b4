// Checks of the options objects the public API takes, so a wrong argument is an error that names
// the option and says what is allowed, not a TypeError from deep inside.

/** Largest integer in a position, context or count: token positions are int32 in the kernels. */
export const maxTokens = 2 ** 30;

/**
 * `value` as an options object: undefined is {}, anything but a plain object is a TypeError.
 * @example const o = optionsObject(options, "loadModel: options");
 */
export function optionsObject<T extends object>(value: T | undefined | null, what: string): T {
  if (value === undefined) return {} as T;
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new TypeError(`${what} must be an object (or left out), got ${show(value)}`);
  return value;
}

/**
 * Throws naming every key of `o` that is none of `names`: a misspelt option (max_new_tokens)
 * would otherwise be ignored and its default run without a word. `elsewhere` names the options
 * that belong to another call, to say where they go.
 * @example rejectUnknownOptions(o, ["maxContext", "hybrid"], "createSession: options");
 */
export function rejectUnknownOptions(
  o: object,
  names: readonly string[],
  what: string,
  elsewhere?: { names: readonly string[]; where: string },
): void {
  const unknown = Object.keys(o).filter((k) => !names.includes(k));
  if (!unknown.length) return;
  const misplaced = elsewhere ? unknown.filter((k) => elsewhere.names.includes(k)) : [];
  const hint = misplaced.length ? ` (${misplaced.join(", ")}: ${elsewhere?.where})` : "";
  throw new RangeError(`${what} has no option ${unknown.map((k) => show(k)).join(", ")}${hint}; its options are ${names.join(", ")}`);
}

/**
 * An optional AbortSignal (any object with AbortSignal's members, so signals from other realms count).
 * @example const signal = optionalSignal(o.signal, "generate: signal");
 */
export function optionalSignal(value: unknown, what: string): AbortSignal | undefined {
  if (value === undefined) return undefined;
  const s = value as AbortSignal;
  if (
    typeof s !== "object" ||
    s === null ||
    typeof s.aborted !== "boolean" ||
    typeof s.throwIfAborted !== "function" ||
    typeof s.addEventListener !== "function"
  )
    throw new TypeError(`${what} must be an AbortSignal (e.g. new AbortController().signal), got ${show(value)}`);
  return s;
}

/**
 * An optional callback.
 * @example const onProgress = optionalFunction(o.onProgress, "loadModel: onProgress");
 */
export function optionalFunction<F extends (...args: never[]) => unknown>(value: F | undefined, what: string): F | undefined {
  if (value !== undefined && typeof value !== "function") throw new TypeError(`${what} must be a function, got ${show(value)}`);
  return value;
}

/**
 * An integer in [min, max], or `fallback` when left out.
 * @example const chunk = integerIn(o.prefillChunk, "createSession: prefillChunk", 1, 2 ** 20, 4096);
 */
export function integerIn(value: unknown, what: string, min: number, max: number, fallback?: number): number {
  const v = value ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw new RangeError(`${what} must be an integer in [${min}, ${max}], got ${show(value)}`);
  return v;
}

/**
 * An optional boolean.
 * @example const stopAtEos = optionalBoolean(o.stopAtEos, "generate: stopAtEos") ?? true;
 */
export function optionalBoolean(value: unknown, what: string): boolean | undefined {
  if (value !== undefined && typeof value !== "boolean") throw new TypeError(`${what} must be true or false, got ${show(value)}`);
  return value as boolean | undefined;
}

/**
 * One of `allowed`, or undefined.
 * @example const dtype = optionalChoice(o.dtype, "loadModel: dtype", ["f32", "f16", "bf16"]);
 */
export function optionalChoice<T extends string>(value: unknown, what: string, allowed: readonly T[]): T | undefined {
  if (value !== undefined && !allowed.includes(value as T))
    throw new RangeError(`${what} must be one of ${allowed.join(", ")}, got ${show(value)}`);
  return value as T | undefined;
}

/** A value as an error message shows it. */
export function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "function") return "a function";
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "object" && v !== null) {
    if (Array.isArray(v)) return "an array";
    // A typed array or a class's instance by its class (a Uint32Array, a Session), a plain object as such.
    const name = (Object.getPrototypeOf(v) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    return typeof name === "string" && name !== "Object" && name !== "" ? `a ${name}` : "an object";
  }
  return String(v);
}
