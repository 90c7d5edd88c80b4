// Prompts into token ids, and the checks that a prompt has tokens and fits its sequence.

import type { ChatMessage, Tokenizer } from "../checkpoint/tokenizer";
import { show } from "../common/validate";

/** Plain text, or chat messages rendered with the model's chat template. */
export type Prompt = string | ChatMessage[];

/**
 * Prompt → token ids: chat messages through the template; plain text with the tokenizer's special tokens.
 * @example const ids = promptIds(model.tokenizer, [{ role: "user", content: "Hi" }]);
 */
export function promptIds(tokenizer: Tokenizer, prompt: Prompt): number[] {
  if (typeof prompt === "string") return tokenizer.encode(prompt);
  if (!Array.isArray(prompt)) throw new TypeError(`a prompt must be a string or an array of chat messages, got ${show(prompt)}`);
  prompt.forEach((m, i) => {
    if (typeof m !== "object" || m === null || typeof m.role !== "string" || typeof m.content !== "string")
      throw new TypeError(`chat message ${i} must be { role: string, content: string }, got ${show(m)}`);
  });
  return tokenizer.encode(tokenizer.applyChatTemplate(prompt, { addGenerationPrompt: true }), { addSpecialTokens: false });
}

/**
 * Checks that a prompt's `ids` are not empty and, after the `held` tokens its sequence holds
 * already, fit in `maxContext`; `label` names the prompt in the error ("the prompt", "prompt 3").
 * @example checkPromptFits(ids, session.stats.contextTokens, 8192, "the prompt");
 */
export function checkPromptFits(ids: readonly number[], held: number, maxContext: number, label: string): void {
  if (ids.length === 0) throw new RangeError(`${label} encodes to no tokens`);
  if (held + ids.length > maxContext)
    throw new RangeError(
      `${label} has ${ids.length} tokens${held ? ` and the session already holds ${held}` : ""}: more than maxContext ${maxContext}. ` +
        "Shorten the prompt or ask for a larger maxContext",
    );
}
