// Runs a prompt and a forced continuation through a model under a hybrid option, returning the
// logits after the prompt and after each continuation token, the policy's state and the cache kinds.
import type { Model } from "../../lib";
import { resolveHybrid } from "../../lib/hybrid/options";
import { HybridPolicy } from "../../lib/hybrid/policy";

export function runHybrid(model: Model, hybrid: object, ids: number[], cont: number[]) {
  const policy = new HybridPolicy(model.decoder, resolveHybrid(hybrid as never, model.config.layers));
  const seq = policy.createSequence();
  try {
    policy.beforePrefill(seq, ids.length);
    const rows = [model.decoder.prefill(seq, ids, { policy, chunkSize: 16 })];
    for (const t of cont) {
      rows.push(model.decoder.decode([seq], [t]));
      policy.afterDecode(seq);
    }
    return { rows, state: { ...policy.state }, kinds: seq.caches.map((c) => c.kind) };
  } finally {
    model.decoder.releaseSequence(seq);
    policy.dispose();
  }
}
