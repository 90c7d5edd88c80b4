// A session's conversation as chat messages, so that a later turn's messages are rendered within
// the whole conversation, as the chat template means them: many templates open every rendering
// with a block of their own (Llama 3.1's dates, Qwen2's default system prompt) or close an
// assistant's reply with more than the EOS token it generated, and a turn rendered alone would
// repeat the one and leave out the other.
import type { ChatMessage, Tokenizer } from "../checkpoint/tokenizer";

/** A turn's messages and the text to feed for them; ChatHistory.commit takes it once it went in. */
export interface ChatTurn {
  readonly added: readonly ChatMessage[];
  /** What the session is fed for the turn, encoded without special tokens (the template has them). */
  readonly text: string;
}

/**
 * The messages of a session whose every turn so far was chat, and its tokens as text (the turns'
 * fed text and the replies' tokens decoded). A turn of text or token ids ends that: later chat
 * turns are rendered alone, without the template's leading BOS.
 * @example
 * const turn = history.turn(tokenizer, [{ role: "user", content: "And then?" }]);
 * // ... feed tokenizer.encode(turn.text, { addSpecialTokens: false }), generate the reply ...
 * history.commit(tokenizer, turn, replyText, replyTokens);
 */
export class ChatHistory {
  private messages: ChatMessage[] = [];
  /** The session's tokens as text while every turn was chat; undefined once one was not. */
  private heldText: string | undefined = "";

  /**
   * The text to feed for `added` on a session that holds `held` tokens: on an empty session the
   * messages rendered; after chat turns, what rendering the whole conversation adds to the text
   * the session holds (or, where a template renders the earlier turns otherwise, to the
   * conversation rendered so far); otherwise the messages rendered alone, less the leading BOS.
   */
  turn(tokenizer: Tokenizer, added: readonly ChatMessage[], held: number): ChatTurn {
    if (held === 0) return { added, text: tokenizer.applyChatTemplate([...added]) };
    // An empty held text with tokens held: the session began with text or token ids.
    if (this.heldText) {
      const whole = tokenizer.applyChatTemplate([...this.messages, ...added]);
      if (whole.startsWith(this.heldText)) return { added, text: whole.slice(this.heldText.length) };
      const before = tokenizer.applyChatTemplate(this.messages, { addGenerationPrompt: false });
      if (whole.startsWith(before)) return { added, text: whole.slice(before.length) };
    }
    const alone = tokenizer.applyChatTemplate([...added]);
    const bos = tokenizer.bosToken;
    return { added, text: bos && alone.startsWith(bos) ? alone.slice(bos.length) : alone };
  }

  /**
   * Records a chat turn that went in: its messages, then the reply as the assistant's message
   * (`reply`, the text the turn gave) and as the tokens the session holds (`replyTokens`).
   */
  commit(tokenizer: Tokenizer, turn: ChatTurn, reply: string, replyTokens: readonly number[]): void {
    if (this.heldText === undefined) return;
    this.messages = [...this.messages, ...turn.added, { role: "assistant", content: reply }];
    this.heldText += turn.text + tokenizer.decode(replyTokens);
  }

  /** Records a turn of text or token ids: the session's tokens are no longer a rendered conversation. */
  breakOff(): void {
    this.heldText = undefined;
  }
}
