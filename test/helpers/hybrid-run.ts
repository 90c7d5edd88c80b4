// Runs a prompt and a forced continuation through a model under a hybrid option, returning the
// logits after the prompt and after each continuation token, the policy's state and the cache kinds.
import type { Model } from "../../lib";
import { resolveHybrid } from "../../lib/hybrid/options";
import { HybridPolicy } from "../../lib/hybrid/policy";

export function runHybrid(model: Model, hybrid: object, ids: number[], cont: number[]) {
  const policy = new HybridPolicy(model.decoder, resolveHybrid(hybrid as never, model.config.layers));
  const seq = model.decoder.createSequence(policy);
  try {
    const rows = [model.decoder.prefill(seq, ids, { chunkSize: 16 })];
    for (const t of cont) rows.push(model.decoder.step([seq], [t], "logits"));
    return { rows, state: { ...policy.state }, kinds: seq.caches.map((c) => c.kind) };
  } finally {
    seq.dispose();
  }
}
