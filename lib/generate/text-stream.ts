// Generated token ids into text, chunk by chunk, and the stop strings found in it.
import type { Tokenizer } from "../checkpoint/tokenizer";

/**
 * Tokens after the settled text that each push decodes again: more than any tokenizer's reach
 * back (a character split over up to four byte tokens; the clean-up of a space before the next
 * token).
 */
const openTokens = 8;
/** How far back from the end of the text the tokenizer's clean-up may still remove a space. */
const cleanUpReach = 5;
/** Characters of text the open tokens must hold before the ones ahead of them settle. */
const openText = 4;
/**
 * The open tokens are decoded after settled ones with text as context, so that the first open
 * token is not a sequence's first (a decoder may strip a sequence's leading space). Settling
 * looks back this far for the last settled token with text, and otherwise keeps the context it
 * had (which then grows over a run of tokens without text, special ones say).
 */
const contextSearch = 64;

/** What the clean-up removes a space before, spaces between them aside: " ." → ".", " n't" → "n't", and so on. */
const cleanedAfterSpace = [".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"];

/**
 * Where text[0, end) stops being final under transformers' clean-up of spaces, whatever text
 * follows: at the first space among its last cleanUpReach characters that what follows it so far
 * (its spaces aside) may still grow into something the clean-up removes a space before (" n" may
 * become " n't", " " anything), or at an apostrophe that ends it. The rules chain (" n ' t" becomes
 * "n't" through " ' " → "'"), hence the spaces aside; and a later one can undo an earlier: " ' "
 * → "'" gives "x'", but "x ' ." becomes "x '." as " ." goes first, hence the apostrophe. A space
 * followed by a letter no rule takes (" the") is final at once: the clean-up removes spaces only.
 */
function cleanUpSettled(text: string, end: number): number {
  for (let i = Math.max(0, end - cleanUpReach); i < end; i++) {
    if (text[i] === "'" && i === end - 1) return i;
    if (text[i] !== " ") continue;
    const after = text.slice(i + 1, end).replaceAll(" ", "");
    if (cleanedAfterSpace.some((p) => p.startsWith(after))) return i;
  }
  return end;
}

/**
 * Turns generated token ids into text chunks: decodes the tail so multi-token characters come out
 * whole, holds back a possible start of a stop string, and finds stop strings. Each push decodes
 * a window of a few tokens, not the whole generation, so a chunk costs the same at token 16,000
 * as at token 10. Without a tokenizer (a model loaded without one) every chunk's text is empty
 * and there are no stop strings.
 * @example
 * const stream = new TextStream(model.tokenizer, ["\n\n"]);
 * const { text, stopped } = stream.push(id);
 */
export class TextStream {
  private ids: number[] = [];
  private emitted = 0;
  /** The text of ids[0, settledIds): a prefix of the decoded ids, whatever tokens come after. */
  private settled = "";
  private settledIds = 0;
  /** Where the context before the open tokens begins (at 0 it is the sequence's start), and its text. */
  private contextFrom = 0;
  private contextText = "";
  private readonly longestStop: number;

  constructor(
    private readonly tokenizer: Tokenizer | undefined,
    private readonly stops: readonly string[],
  ) {
    this.longestStop = Math.max(0, ...stops.map((s) => s.length));
  }

  /** The text `id` adds that is safe to show now, and whether a stop string was found (its text left out). */
  push(id: number): { text: string; stopped: boolean } {
    this.ids.push(id);
    if (!this.tokenizer) return { text: "", stopped: false };
    const full = this.text();
    // The text ends where the first stop string found begins, whichever of them it is. One found
    // by an earlier push would have stopped it, and text never changes once shown, so the search
    // starts where a new one could.
    const from = Math.max(0, this.emitted - this.longestStop);
    let at = -1;
    for (const s of this.stops) {
      const found = full.indexOf(s, from);
      if (found >= 0 && (at < 0 || found < at)) at = found;
    }
    if (at >= 0) {
      const text = full.slice(this.emitted, Math.max(at, this.emitted));
      this.emitted = full.length;
      return { text, stopped: true };
    }
    // Hold back an incomplete character, what the tokenizer's clean-up may still change, and any
    // suffix that could begin a stop string. Without the clean-up a token's text comes out with it.
    let safe = full.endsWith("\uFFFD") ? full.length - 1 : full.length;
    if (this.tokenizer.cleansUpSpaces) safe = cleanUpSettled(full, safe);
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
    const full = this.text();
    const text = full.slice(this.emitted);
    this.emitted = full.length;
    return text;
  }

  /**
   * The decoded text of every id pushed: the settled text, then the open tokens decoded after a
   * few settled ones as context (the context's own text cut off). Once 2 × openTokens are open,
   * the first openTokens of them settle, if their text is a prefix of what the window decodes to,
   * ends in no incomplete character, and has openText characters after it; otherwise they stay
   * open, and the window grows until they do.
   */
  private text(): string {
    const from = this.contextFrom;
    const window = this.decode(from, this.ids.length);
    // A window that does not begin with its context's text (no tokenizer here does that): decode
    // everything, and settle again from the start.
    if (!window.startsWith(this.contextText)) {
      this.settled = this.contextText = "";
      this.settledIds = this.contextFrom = 0;
      return this.decode(0, this.ids.length);
    }
    const full = this.settled + window.slice(this.contextText.length);
    const settleTo = this.ids.length - openTokens;
    if (settleTo - this.settledIds >= openTokens) {
      const settling = this.decode(from, settleTo);
      // The open tokens must hold text of their own: a clean-up that joins text to what comes
      // before reaches back over tokens without text (skipped special ones). Its patterns are
      // ASCII, so a character beyond it is as good as openText of them (CJK text written in byte
      // tokens holds few characters a token).
      const open = window.slice(settling.length, settling.length + openText);
      const enough = open.length >= openText || [...open].some((c) => c.charCodeAt(0) > 0x7f);
      if (enough && settling.startsWith(this.contextText) && window.startsWith(settling) && !settling.endsWith("\uFFFD")) {
        this.settled += settling.slice(this.contextText.length);
        this.settledIds = settleTo;
        this.findContext();
      }
    }
    return full;
  }

  /** The text of ids[from, to) (none for no ids). */
  private decode(from: number, to: number): string {
    return to > from ? this.tokenizer!.decode(this.ids.slice(from, to), { skipSpecialTokens: true }) : "";
  }

  /** The context for the settled tokens: back from the last settled token to one with text. */
  private findContext(): void {
    for (let from = this.settledIds - 1; from > Math.max(this.contextFrom, this.settledIds - contextSearch); from--) {
      const text = this.decode(from, this.settledIds);
      if (text !== "") {
        this.contextFrom = from;
        this.contextText = text;
        return;
      }
    }
    this.contextText = this.decode(this.contextFrom, this.settledIds);
  }
}
