// Sizes of memory as people write them on a command line: "80GB", "64GiB", "512 MiB", "1e9".

const unitBytes: Record<string, number> = {
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 2 ** 10,
  m: 1e6,
  mb: 1e6,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gib: 2 ** 30,
  t: 1e12,
  tb: 1e12,
  tib: 2 ** 40,
};

/**
 * Bytes in a size: a positive number, or a number with a decimal (kB, MB, GB, TB) or binary (KiB,
 * MiB, GiB, TiB) unit, case-insensitive. A RangeError says what was wrong.
 * @example parseByteSize("40GiB") // 42949672960
 */
export function parseByteSize(value: string): number {
  const plain = Number(value);
  if (Number.isFinite(plain) && plain > 0) return plain;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$/i.exec(value.trim());
  if (!m) throw new RangeError(`not a size: ${value} (e.g. 80GB, 64GiB, 1e9)`);
  const unit = (m[2] ?? "b").toLowerCase();
  if (!(unit in unitBytes)) throw new RangeError(`unknown unit in ${value}`);
  return Number(m[1]) * unitBytes[unit];
}
