// A session's conversation as chat messages, so that a later turn's messages are rendered within
// the whole conversation, as the chat template means them: many templates open every rendering
// with a block of their own (Llama 3.1's dates, Qwen2's default system prompt) or close an
// assistant's reply with more than the EOS token it generated, and a turn rendered alone would
// repeat the one and leave out the other.
import { type ChatMessage, ChatTemplateError, type Tokenizer } from "../checkpoint/tokenizer";

/** A turn's messages and the text to feed for them; ChatHistory.commit takes it once it went in. */
export interface ChatTurn {
  readonly added: readonly ChatMessage[];
  /** What the session is fed for the turn, encoded without special tokens (the template has them). */
  readonly text: string;
}

/** A reply as the session holds it: the tokens generated, and whether the last is an EOS token. */
export interface HeldReply {
  tokens: readonly number[];
  endsWithEos: boolean;
}

// Stands for a reply's content in a rendering, to find the text a template closes a reply with:
// letters alone, which a template that escapes or quotes content (tojson) leaves as they are.
const contentMark = "lighttransferReplyContent7f3a9c";

/**
 * The messages of a session whose every turn so far was chat, and its tokens as text (the turns'
 * fed text and the replies' tokens decoded). A turn of text or token ids ends that: later chat
 * turns are rendered alone, without the first BOS the template writes.
 * @example
 * const turn = history.turn(tokenizer, [{ role: "user", content: "And then?" }], session.stats.contextTokens);
 * // ... feed tokenizer.encode(turn.text, { addSpecialTokens: false }), generate the reply ...
 * history.commit(tokenizer, turn, { tokens: replyTokens, endsWithEos: true });
 */
export class ChatHistory {
  private messages: ChatMessage[] = [];
  /** The session's tokens as text while every turn was chat ("" before the first). */
  private heldText: string | undefined = "";
  /** The last reply's tokens, which a turn without a prompt of its own goes on with. */
  private replyTokens: number[] = [];
  /** The text of the EOS token the last reply ended with ("" if none), which most templates close a reply with. */
  private replyEos = "";

  /**
   * The text to feed for `added` on a session that holds `held` tokens: on an empty session the
   * messages rendered; after chat turns, what rendering the whole conversation adds to the text
   * the session holds, or, where the template renders the last reply otherwise than its tokens
   * (trimmed, its reasoning dropped), what the conversation renders after that reply's content
   * (its close, less an EOS the reply ended with, and the new messages). A template that refuses
   * the whole conversation refuses the turn (an Error with its words). After a turn of text or
   * ids, the messages rendered alone, without the first BOS the template writes.
   */
  turn(tokenizer: Tokenizer, added: readonly ChatMessage[], held: number): ChatTurn {
    if (held === 0) return { added, text: tokenizer.applyChatTemplate([...added]) };
    // An empty held text with tokens held: the session began with text or token ids.
    if (this.heldText) {
      const within = this.withinConversation(tokenizer, added, this.heldText);
      if (within !== undefined) return { added, text: within };
    }
    return { added, text: withoutLeadingBos(tokenizer, added) };
  }

  /**
   * Records a chat turn that went in, with its reply as the session holds it; the assistant's
   * message is that reply's text (a stop string and text the stream held back included, an EOS
   * left for the template to write).
   */
  commit(tokenizer: Tokenizer, turn: ChatTurn, reply: HeldReply): void {
    if (this.heldText === undefined) return;
    this.messages = [...this.messages, ...turn.added, this.assistant(tokenizer, reply.tokens, reply.endsWithEos)];
    this.heldText += turn.text + tokenizer.decode(reply.tokens);
  }

  /** Records a turn that went on from the last reply with no prompt of its own: its tokens are more of that reply. */
  extendReply(tokenizer: Tokenizer, reply: HeldReply): void {
    if (this.heldText === undefined || this.messages[this.messages.length - 1]?.role !== "assistant") {
      this.breakOff();
      return;
    }
    const tokens = [...this.replyTokens, ...reply.tokens];
    this.messages = [...this.messages.slice(0, -1), this.assistant(tokenizer, tokens, reply.endsWithEos)];
    this.heldText += tokenizer.decode(reply.tokens);
  }

  /** The assistant's message of a reply (its tokens' text, the EOS left for the template to write), kept as the last reply. */
  private assistant(tokenizer: Tokenizer, tokens: readonly number[], endsWithEos: boolean): ChatMessage {
    this.replyTokens = [...tokens];
    this.replyEos = endsWithEos ? tokenizer.decode(tokens.slice(-1)) : "";
    return { role: "assistant", content: tokenizer.decode(endsWithEos ? tokens.slice(0, -1) : tokens, { skipSpecialTokens: true }) };
  }

  /** Records a turn of text or token ids: the session's tokens are no longer a rendered conversation. */
  breakOff(): void {
    this.heldText = undefined;
  }

  /** The text to feed for `added` within the conversation, or undefined where the template cannot say. */
  private withinConversation(tokenizer: Tokenizer, added: readonly ChatMessage[], heldText: string): string | undefined {
    let whole: string;
    try {
      whole = tokenizer.applyChatTemplate([...this.messages, ...added]);
    } catch (err) {
      if (!(err instanceof ChatTemplateError)) throw err;
      throw new Error(
        `this model's chat template refuses the conversation these messages would make with the session's earlier turns: ${err.problem}; ` +
          "send messages it takes, or go on in a new session",
        { cause: err },
      );
    }
    if (whole.startsWith(heldText)) return whole.slice(heldText.length);
    // The conversation with a mark for the last reply's content: what follows the mark is the
    // template's close of that reply and the new messages.
    const last = this.messages[this.messages.length - 1];
    let marked: string;
    try {
      marked = tokenizer.applyChatTemplate([...this.messages.slice(0, -1), { ...last, content: contentMark }, ...added]);
    } catch {
      return undefined;
    }
    const at = marked.lastIndexOf(contentMark);
    if (at < 0) return undefined;
    const after = marked.slice(at + contentMark.length);
    return after.startsWith(this.replyEos) ? after.slice(this.replyEos.length) : after;
  }
}

/**
 * The messages rendered alone, less the first BOS the template writes (found where the rendering
 * with an empty bos_token first differs): it goes on from a session that has its BOS, while a
 * template's later BOS (Llama 2's before each [INST]) stays, and a BOS token that is also how each
 * message opens (ChatML's <|im_start|> named bos_token) is not taken for one.
 */
function withoutLeadingBos(tokenizer: Tokenizer, added: readonly ChatMessage[]): string {
  const alone = tokenizer.applyChatTemplate([...added]);
  const bos = tokenizer.bosToken;
  if (!bos) return alone;
  const bare = tokenizer.applyChatTemplate([...added], { bosToken: "" });
  let at = 0;
  while (at < alone.length && alone[at] === bare[at]) at++;
  if (at === alone.length) return alone;
  return alone.startsWith(bos, at) ? alone.slice(0, at) + alone.slice(at + bos.length) : bare;
}
