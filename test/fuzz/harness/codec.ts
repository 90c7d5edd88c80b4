// Fuzz cases travel to the child processes as JSON, but the interesting values are the ones JSON
// cannot hold: NaN, ±Infinity, -0, undefined and BigInt. They are written as tagged objects and
// restored on the other side, so a case runs with exactly the value fast-check generated.

/** JSON text of `value`, with the values JSON has no form for tagged. */
export function encodeCase(value: unknown): string {
  return JSON.stringify(value, function (key, v) {
    // `this[key]` is the raw value: JSON.stringify has already turned -0 into 0 in `v`.
    const raw = (this as Record<string, unknown>)[key];
    if (typeof raw === "number" && (!Number.isFinite(raw) || Object.is(raw, -0)))
      return { $number: Object.is(raw, -0) ? "-0" : String(raw) };
    if (typeof raw === "bigint") return { $bigint: raw.toString() };
    if (raw === undefined && key !== "") return { $undefined: true };
    return v;
  });
}

/** The value `encodeCase` wrote. */
export function decodeCase(text: string): unknown {
  return JSON.parse(text, (_key, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      if (typeof v.$number === "string") return v.$number === "-0" ? -0 : Number(v.$number);
      if (typeof v.$bigint === "string") return BigInt(v.$bigint);
      if (v.$undefined === true) return undefined;
    }
    return v;
  });
}

/** A short readable form of a case for failure reports (the tagged JSON, cut at `max` characters). */
export function describeCase(value: unknown, max = 600): string {
  const text = encodeCase(value);
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}
