// Session helpers shared by the reliability suites (CPU and GPU): a whole greedy generation, and
// what a session's caches hold.
import { kernels, type Model, type Session, Tensor } from "../../lib";
import type { LayerCache } from "../../lib/cache/layer-cache";
import type { GenerationSequence } from "../../lib/generate/sequence";
import type { Sequence } from "../../lib/model/sequence";

/** The tokens `session` generates greedily for `prompt`, EOS or not. */
export async function greedyTokens(session: Session, prompt: string, maxNewTokens = 6): Promise<number[]> {
  const tokens: number[] = [];
  for await (const chunk of session.generate(prompt, { maxNewTokens, stopAtEos: false })) tokens.push(...chunk.tokens);
  return tokens;
}

/** The keys and values a session's caches hold, layer by layer, in position order. */
export function heldKv(model: Model, session: Session): Float32Array[] {
  const { seq } = (session as unknown as { sequence: GenerationSequence }).sequence;
  return cachedKv(model, seq, (cache, p) => {
    try {
      cache.slotOfPosition(p);
      return true;
    } catch {
      return false;
    }
  });
}

/** The keys then values `seq` caches for the positions `keep` picks, layer by layer, in position order. */
export function cachedKv(model: Model, seq: Sequence, keep: (cache: LayerCache, position: number) => boolean): Float32Array[] {
  const { kPages, vPages } = model.pool;
  return seq.caches.map((cache) => {
    const positions = Array.from({ length: seq.length }, (_, p) => p).filter((p) => keep(cache, p));
    const slots = Tensor.from(
      Int32Array.from(positions, (p) => cache.slotOfPosition(p)),
      [positions.length],
      { device: kPages.device },
    );
    const { k, v } = kernels.gatherKv({ kPages, vPages, slots });
    const held = Float32Array.from([...k.toFloat32Array(), ...v.toFloat32Array()]);
    for (const t of [slots, k, v]) t.dispose();
    return held;
  });
}

/**
 * The keys and values of every position a later step or prefill of `seq` can read: all of a full
 * cache's, and of a ring's those it still holds once one more token comes (a step appends before
 * it attends, so the position that token evicts is never read again).
 */
export function readableKv(model: Model, seq: Sequence): Float32Array[] {
  return cachedKv(model, seq, (cache, p) => cache.kind === "full" || p < cache.sink || p > seq.length - cache.window);
}
