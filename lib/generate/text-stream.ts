// Generated token ids into text, chunk by chunk, and the stop strings found in it.
import type { Tokenizer } from "../checkpoint/tokenizer";

/**
 * Turns generated token ids into text chunks: decodes the whole tail so multi-token characters
 * come out whole, holds back a possible start of a stop string, and finds stop strings. Without a
 * tokenizer (a model loaded without one) every chunk's text is empty and there are no stop strings.
 * @example
 * const stream = new TextStream(model.tokenizer, ["\n\n"]);
 * const { text, stopped } = stream.push(id);
 */
export class TextStream {
  private ids: number[] = [];
  private emitted = 0;
  constructor(
    private readonly tokenizer: Tokenizer | undefined,
    private readonly stops: string[],
  ) {}

  /** The text `id` adds that is safe to show now, and whether a stop string was found (its text left out). */
  push(id: number): { text: string; stopped: boolean } {
    this.ids.push(id);
    if (!this.tokenizer) return { text: "", stopped: false };
    const full = this.tokenizer.decode(this.ids, { skipSpecialTokens: true });
    // The text ends where the first stop string found begins, whichever of them it is.
    let at = -1;
    for (const s of this.stops) {
      const found = full.indexOf(s);
      if (found >= 0 && (at < 0 || found < at)) at = found;
    }
    if (at >= 0) {
      const text = full.slice(this.emitted, Math.max(at, this.emitted));
      this.emitted = full.length;
      return { text, stopped: true };
    }
    // Hold back an incomplete character, a space the tokenizer's clean-up may still drop (it
    // removes the space before punctuation and contractions, " ," → "," or " n't" → "n't", once
    // what follows arrives: at most three characters after the space), and any suffix that could
    // begin a stop string.
    let safe = full.endsWith("\uFFFD") ? full.length - 1 : full.length;
    const lastSpace = full.lastIndexOf(" ", safe - 1);
    if (lastSpace >= 0 && safe - lastSpace <= 4) safe = lastSpace;
    for (const s of this.stops)
      for (let k = Math.min(s.length - 1, safe); k > 0; k--)
        if (full.slice(safe - k, safe) === s.slice(0, k)) {
          safe -= k;
          break;
        }
    const text = full.slice(this.emitted, Math.max(safe, this.emitted));
    this.emitted = Math.max(safe, this.emitted);
    return { text, stopped: false };
  }

  /** Everything not shown yet (at the end of a generation). */
  flush(): string {
    // Nothing pushed (EOS as the first token is not pushed): nothing to decode.
    if (!this.tokenizer || this.ids.length === 0) return "";
    const full = this.tokenizer.decode(this.ids, { skipSpecialTokens: true });
    const text = full.slice(this.emitted);
    this.emitted = full.length;
    return text;
  }
}
