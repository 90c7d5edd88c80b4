// Prompts into token ids, and the checks that a prompt has tokens and fits its sequence.

import { checkTokenIds } from "../checkpoint/token-ids";
import type { ChatMessage, Tokenizer } from "../checkpoint/tokenizer";
import { show } from "../common/validate";

/**
 * Plain text, chat messages rendered with the model's chat template, or token ids (a `number[]`
 * or an `Int32Array`) given to the model as they are.
 */
export type Prompt = string | ChatMessage[] | number[] | Int32Array;

/** The error for text where a model has no tokenizer: says what to pass instead. */
export function noTokenizerError(what: string): Error {
  return new Error(
    `${what}: this model was loaded without a tokenizer; pass token ids (a number[] or Int32Array) as the prompt, ` +
      "or load the model from a directory with tokenizer.json",
  );
}

/**
 * Prompt → token ids: token ids checked against the vocabulary and copied; chat messages through
 * the template; plain text with the tokenizer's special tokens. Text needs a tokenizer (`undefined`
 * when the model was loaded without one); `label` names the prompt in errors ("generate: prompt").
 * @example
 * const ids = promptIds(model.tokenizer, [{ role: "user", content: "Hi" }], model.config.vocabSize, "prompt");
 * const same = promptIds(undefined, Int32Array.from(ids), model.config.vocabSize, "prompt");
 */
export function promptIds(tokenizer: Tokenizer | undefined, prompt: Prompt, vocabSize: number, label: string): number[] {
  if (prompt instanceof Int32Array || (Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] !== "object"))
    return Array.from(checkTokenIds(prompt, vocabSize, label));
  if (typeof prompt !== "string" && !Array.isArray(prompt))
    throw new TypeError(`${label} must be a string, an array of chat messages or token ids, got ${show(prompt)}`);
  if (!tokenizer) throw noTokenizerError(label);
  if (typeof prompt === "string") return tokenizer.encode(prompt);
  (prompt as unknown[]).forEach((m, i) => {
    const message = m as ChatMessage;
    if (typeof m !== "object" || m === null || typeof message.role !== "string" || typeof message.content !== "string")
      throw new TypeError(`chat message ${i} must be { role: string, content: string }, got ${show(m)}`);
  });
  return tokenizer.encode(tokenizer.applyChatTemplate(prompt as ChatMessage[], { addGenerationPrompt: true }), {
    addSpecialTokens: false,
  });
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
