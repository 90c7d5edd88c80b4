import type { Corpus, Tokenizer } from "../../lib";

const longest = new Map<Tokenizer, Map<Corpus, number>>();

/**
 * The most tokens one word of the corpus's filler takes inside a haystack (after a space, as the
 * text around it leaves it): a task prompt falls short of its context by less than this, since
 * filler stops at the last whole word that fits. Counted after ". " so that a tokenizer writing ▁
 * before its whole input (Llama 2, Mistral) is counted as the haystack holds the word.
 * @example const bound = longestFillerWord(tokenizer, brownCorpus()); // 32 for llama-tiny on Brown
 */
export function longestFillerWord(tokenizer: Tokenizer, corpus: Corpus): number {
  const byCorpus = longest.get(tokenizer) ?? new Map<Corpus, number>();
  longest.set(tokenizer, byCorpus);
  const known = byCorpus.get(corpus);
  if (known !== undefined) return known;
  const anchor = tokenizer.encode(".", { addSpecialTokens: false }).length;
  const words = new Set(corpus.filler.flat().flatMap((s) => s.split(" ")));
  let most = 0;
  for (const w of words) most = Math.max(most, tokenizer.encode(`. ${w}`, { addSpecialTokens: false }).length - anchor);
  byCorpus.set(corpus, most);
  return most;
}
