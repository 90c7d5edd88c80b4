// Prompts into token ids, and the checks that a prompt has tokens and fits its sequence.

import { checkTokenIds } from "../checkpoint/token-ids";
import type { ChatMessage, Tokenizer } from "../checkpoint/tokenizer";
import { show } from "../common/validate";

/**
 * Plain text, chat messages rendered with the model's chat template, or token ids (a `number[]`
 * or an `Int32Array`) given to the model as they are.
 */
export type Prompt = string | readonly ChatMessage[] | readonly number[] | Int32Array;

/** The error for text where a model has no tokenizer: says what to pass instead. */
export function noTokenizerError(what: string): Error {
  return new Error(
    `${what}: this model was loaded without a tokenizer; pass token ids (a number[] or Int32Array) as the prompt, ` +
      "or load the model from a directory with tokenizer.json",
  );
}

/** What a prompt gives the model: token ids as they are, or text for the tokenizer. */
type PromptSource = { ids: number[] } | { text: string; addSpecialTokens: boolean; tokenizer: Tokenizer };

/** How a prompt is encoded (promptIdsAsync). */
export interface PromptEncoding {
  /**
   * Whether text goes on a sequence that holds tokens already (a session's later turn): it is
   * then encoded without the tokenizer's special tokens, which belong at a sequence's start.
   */
  continuing?: boolean;
  /** Renders chat messages in place of the chat template alone (a session's ChatHistory); the text has its special tokens. */
  renderChat?: (messages: ChatMessage[]) => string;
  /** Sees the text (plain, or the rendered template) before it is encoded, to refuse it early: encoding megabytes takes seconds. */
  checkText?: (text: string) => void;
}

/** A prompt checked, and chat messages rendered with the template; see promptIdsAsync. */
function promptSource(
  tokenizer: Tokenizer | undefined,
  prompt: Prompt,
  vocabSize: number,
  label: string,
  { continuing = false, renderChat }: PromptEncoding,
): PromptSource {
  // [] is both "no token ids" and "no chat messages"; either way there is nothing to generate
  // from, and taking it for chat would blame a missing chat_template or render a bare template.
  if ((Array.isArray(prompt) || prompt instanceof Int32Array) && prompt.length === 0)
    throw new RangeError(`${label} is empty: pass text, at least one chat message, or at least one token id`);
  if (prompt instanceof Int32Array || (Array.isArray(prompt) && typeof prompt[0] !== "object"))
    return { ids: Array.from(checkTokenIds(prompt, vocabSize, label)) };
  if (typeof prompt !== "string" && !Array.isArray(prompt))
    throw new TypeError(
      `${label} must be a string, an array of chat messages or token ids, got ${show(prompt)}` +
        (ArrayBuffer.isView(prompt) ? " (token ids go in a number[] or an Int32Array: Int32Array.from(ids))" : ""),
    );
  if (!tokenizer) throw noTokenizerError(label);
  if (typeof prompt === "string") return { text: prompt, addSpecialTokens: !continuing, tokenizer };
  (prompt as unknown[]).forEach((m, i) => {
    const message = m as ChatMessage;
    if (typeof m !== "object" || m === null || typeof message.role !== "string" || typeof message.content !== "string")
      throw new TypeError(`chat message ${i} must be { role: string, content: string }, got ${show(m)}`);
  });
  const messages = prompt as ChatMessage[];
  const text = renderChat ? renderChat(messages) : tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  return { text, addSpecialTokens: false, tokenizer };
}

/**
 * Prompt → token ids: token ids checked against the vocabulary and copied; chat messages through
 * the template; plain text with the tokenizer's special tokens (a session's later turn: see
 * PromptEncoding). Long text is encoded on the tokenizer's worker thread (Tokenizer.encodeAsync),
 * so that the event loop runs meanwhile. Text needs a tokenizer (`undefined` when the model was
 * loaded without one); `label` names the prompt in errors ("generate: prompt").
 * @example
 * const ids = await promptIdsAsync(model.tokenizer, [{ role: "user", content: "Hi" }], model.config.vocabSize, "prompt");
 * const more = await promptIdsAsync(model.tokenizer, " And then?", model.config.vocabSize, "prompt", { continuing: true });
 */
export async function promptIdsAsync(
  tokenizer: Tokenizer | undefined,
  prompt: Prompt,
  vocabSize: number,
  label: string,
  encoding: PromptEncoding = {},
): Promise<number[]> {
  const source = promptSource(tokenizer, prompt, vocabSize, label, encoding);
  if ("ids" in source) return source.ids;
  encoding.checkText?.(source.text);
  return checkEncodedIds(await source.tokenizer.encodeAsync(source.text, { addSpecialTokens: source.addSpecialTokens }), vocabSize, label);
}

/**
 * Checks that the ids a tokenizer gave for `label` are all below the model's `vocabSize` and
 * returns them. A tokenizer.json with more tokens (added tokens past config.json's vocab_size)
 * would otherwise fail deep in prefill with an index that names neither file.
 * @example const ids = checkEncodedIds(tokenizer.encode(text), model.config.vocabSize, "generate: prompt");
 */
export function checkEncodedIds(ids: number[], vocabSize: number, label: string): number[] {
  for (const id of ids)
    if (id >= vocabSize)
      throw new RangeError(
        `${label}: the tokenizer gives token id ${id}, but the model's vocabulary has ${vocabSize} entries (ids 0..${vocabSize - 1}); ` +
          "tokenizer.json does not match config.json's vocab_size and the weights. Use the tokenizer that came with the checkpoint",
      );
  return ids;
}

/**
 * Checks that a prompt's `ids` are not empty and, after the `held` tokens its sequence holds
 * already, fit in `maxContext`; `label` names the prompt in the error ("the prompt", "prompt 3"),
 * which says how to get a larger context where there is none held (`largerContext`).
 * @example checkPromptFits(ids, session.stats.contextTokens, 8192, "the prompt");
 */
export function checkPromptFits(
  ids: readonly number[],
  held: number,
  maxContext: number,
  label: string,
  largerContext = "ask for a larger maxContext (a session's option; --max-context on the command line)",
): void {
  if (ids.length === 0) throw new RangeError(`${label} encodes to no tokens`);
  if (held + ids.length > maxContext)
    throw new RangeError(
      `${label} has ${ids.length} tokens${held ? ` and the session already holds ${held}` : ""}: more than maxContext ${maxContext}. ` +
        (held
          ? "Shorten the prompt, or go on in a new session (createSession({ maxContext }) for a larger one)"
          : `Shorten the prompt or ${largerContext}`),
    );
}
