// The evaluation's seeded randomness: the same seed gives the same needles, keys and filler on
// every machine, so a run can be repeated and its samples compared across modes.

/**
 * A generator of uniform numbers in [0, 1) from a 32-bit state (mulberry32), seeded by the FNV-1a
 * hash of `key`, so that related samples ("passkey|4096|0.5|3") get unrelated streams.
 * @example const random = seededRandom("passkey|4096|0.5|0"); const digit = Math.floor(random() * 10);
 */
export function seededRandom(key: string): () => number {
  let state = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) state = Math.imul(state ^ key.charCodeAt(i), 0x01000193);
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A uniform integer in [lo, hi] from `random`.
 * @example const key = randomInt(random, 10000, 99999);
 */
export function randomInt(random: () => number, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}
