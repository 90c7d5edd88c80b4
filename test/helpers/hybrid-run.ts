// Runs a prompt and a forced continuation through a model under a hybrid option, returning the
// logits after the prompt and after each continuation token, the policy's state and the cache kinds.
import type { HybridState, Model } from "../../lib";
import { GenerationSequence } from "../../lib/generate/sequence";
import { resolveHybrid } from "../../lib/hybrid/options";

export function runHybrid(model: Model, hybrid: object, ids: number[], cont: number[]) {
  const sequence = new GenerationSequence(model.decoder, resolveHybrid(hybrid as never, model.config.layers));
  try {
    const rows = [sequence.prefill(ids, 16)];
    for (const t of cont) rows.push(model.decoder.step([sequence.seq], [t], "logits"));
    const state = sequence.hybridState && { ...sequence.hybridState };
    return {
      rows,
      kinds: sequence.seq.caches.map((c) => c.kind),
      get state(): HybridState {
        if (!state) throw new Error("a run in hybrid mode 'off' has no hybrid state");
        return state;
      },
    };
  } finally {
    sequence.dispose();
  }
}
