// tokenizer.json and the chat template (chat_template.jinja, else tokenizer_config.json's), through
// well-kept libraries: @huggingface/tokenizers for encoding, @huggingface/jinja for the template.
import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { optionalBoolean, optionsObject, rejectUnknownOptions, show } from "../common/validate";
import { EncoderThread, EncoderThreadError } from "./encoder-thread";
import { checkTokenIds } from "./token-ids";

/** One message of a conversation, as chat templates take it. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string;
}

/** A special token in tokenizer_config.json is a string or { content }. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as { content?: unknown }).content === "string")
    return (value as { content: string }).content;
  return undefined;
}

/**
 * Why a chat template does not parse. @huggingface/jinja's parser reads past its last token (a
 * TypeError, "Cannot read properties of undefined") when the template ends with a tag, an
 * expression or a block still open; its other errors say what they found.
 */
function templateProblem(err: unknown): string {
  if (err instanceof TypeError) return "it ends with a tag, an expression or a block ({% if %}, {% for %}) still open";
  return err instanceof Error ? err.message : String(err);
}

/**
 * Why rendering a chat template failed: what the template raised (raise_exception("Conversation
 * roles must alternate..."), say), or, for the engine's TypeError, that the template used
 * something these messages lack.
 */
function renderProblem(err: unknown): string {
  if (err instanceof TypeError) return "it used a value these messages do not have";
  return err instanceof Error ? err.message : String(err);
}

/** encode's and encodeAsync's options, checked: whether to add the special tokens (default true). */
function encodeOptions(options: { addSpecialTokens?: boolean } | undefined, what: string): boolean {
  const o = optionsObject(options, `${what}: options`);
  rejectUnknownOptions(o, ["addSpecialTokens"], `${what}: options`);
  return optionalBoolean(o.addSpecialTokens, `${what}: addSpecialTokens`) ?? true;
}

/** A chat template that failed on the messages it was given; `problem` is why, in the template's words where it raised. */
export class ChatTemplateError extends Error {
  constructor(readonly problem: string) {
    super(`this model's chat template failed on these messages: ${problem}`);
    this.name = "ChatTemplateError";
  }
}

/** tokenizer.json's added tokens as @huggingface/tokenizers reads them: each a string content and an id. */
function checkAddedTokens(json: Record<string, unknown>): void {
  const added = json.added_tokens;
  if (added === undefined || added === null) return;
  if (!Array.isArray(added)) throw new TypeError(`added_tokens must be a list, got ${typeof added}`);
  added.forEach((token, i) => {
    const t = token as { content?: unknown; id?: unknown } | null;
    if (typeof t !== "object" || t === null || typeof t.content !== "string" || !Number.isSafeInteger(t.id) || (t.id as number) < 0)
      throw new TypeError(`added_tokens[${i}] must be an object with a string "content" and an integer "id" >= 0`);
  });
}

/** A chat template's source parsed, or why it does not parse; `where` names the file it came from. */
function parseTemplate(source: string, where: string): Template | { problem: string } {
  try {
    return new Template(source);
  } catch (err) {
    return { problem: `this model's chat_template (${where}) does not parse: ${templateProblem(err)}; fix it, or pass plain text` };
  }
}

/**
 * tokenizer_config.json's chat_template: a template, absent (null too), or a list of named
 * templates, of which chat prompts use the one named "default" (as transformers does).
 */
function configTemplate(chat: unknown): Template | { problem: string } | undefined {
  if (chat == null) return undefined;
  let source = chat;
  if (Array.isArray(chat)) {
    const named = chat.find((t) => t?.name === "default");
    if (!named)
      return {
        problem:
          `this model's chat_template (tokenizer_config.json) is a list of templates (${chat.map((t) => JSON.stringify(t?.name)).join(", ")}) ` +
          'with none named "default", the one chat prompts use; name one "default", or pass plain text',
      };
    source = named.template;
  }
  if (typeof source !== "string") throw new TypeError(`chat_template must be a string or a list of named templates, got ${typeof source}`);
  return parseTemplate(source, "tokenizer_config.json");
}

/** The text of chat_template.jinja, or undefined when the model has none. */
function readTemplateFile(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT") return undefined;
    throw new Error(`${file}: cannot be read (${e.message})`);
  }
}

/** A JSON file's text and the object it holds. */
function readJson(file: string, what: string): { text: string; json: Record<string, unknown> } {
  let text: string;
  let json: unknown;
  try {
    text = fs.readFileSync(file, "utf8");
    json = JSON.parse(text);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${file}: ${e.code === "ENOENT" ? `not found (the ${what} is needed)` : `cannot be read as JSON (${e.message})`}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error(`${file}: must hold a JSON object (the ${what})`);
  return { text, json: json as Record<string, unknown> };
}

/**
 * Texts shorter than this many characters are encoded on the calling thread by encodeAsync: they
 * take milliseconds, less than a round trip to the worker (or its start).
 */
const inlineEncodeChars = 8192;

/**
 * Byte-level BPE spells byte b as a printable character: itself for the printable Latin-1 bytes,
 * else U+0100 onwards in byte order (GPT-2's table). Character → byte.
 */
const byteOfStandIn: ReadonlyMap<string, number> = (() => {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const map = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) map.set(String.fromCharCode(printable(b) ? b : next++), b);
  return map;
})();

/**
 * A model's tokenizer.
 * @example
 * const tok = Tokenizer.fromDirectory("./Llama-3.1-8B-Instruct");
 * const ids = tok.encode(tok.applyChatTemplate([{ role: "user", content: "Hi" }]), { addSpecialTokens: false });
 * console.log(tok.decode(ids));
 */
export class Tokenizer implements AsyncDisposable {
  /**
   * tokenizer_config.json's bos_token, as text (undefined when it names none).
   * @example const ids = tok.encode(text, { addSpecialTokens: !(tok.bosToken && text.startsWith(tok.bosToken)) }); // no second BOS
   */
  readonly bosToken?: string;
  /**
   * tokenizer_config.json's eos_token, as text (undefined when it names none).
   * @example const eosId = tok.eosToken === undefined ? undefined : tok.tokenId(tok.eosToken);
   */
  readonly eosToken?: string;
  /**
   * Whether decode() applies transformers' clean-up of spaces before punctuation and contractions
   * (" ," → ","): tokenizer_config.json's clean_up_tokenization_spaces, on where it is not set, as
   * in transformers. A streamed text holds back what the clean-up may still change only when on.
   * @example if (!tok.cleansUpSpaces) console.log("each token's text streams as it comes");
   */
  readonly cleansUpSpaces: boolean;
  private readonly hf: HfTokenizer;
  /** The parsed chat template, or why there is none to use (text prompts still work). */
  private readonly template?: Template | { problem: string };
  /** Whether tokens are spelled in byte-level BPE's printable stand-ins for bytes (GPT-2, Llama 3, Qwen2). */
  private readonly byteLevel: boolean;
  /** encodeAsync's worker, built from the same files' text. */
  private readonly thread: EncoderThread;

  private constructor(
    files: { json: Record<string, unknown>; jsonText: string; config: Record<string, unknown>; configText: string },
    templateFile: string | undefined,
  ) {
    const { json, config } = files;
    checkAddedTokens(json);
    this.hf = new HfTokenizer(json, config);
    this.thread = new EncoderThread(files.jsonText, files.configText);
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    this.byteLevel = JSON.stringify(json.decoder ?? null).includes('"ByteLevel"');
    this.cleansUpSpaces = Boolean(config.clean_up_tokenization_spaces ?? true);
    // As in transformers, chat_template.jinja takes priority over tokenizer_config.json's template.
    this.template = templateFile !== undefined ? parseTemplate(templateFile, "chat_template.jinja") : configTemplate(config.chat_template);
  }

  /**
   * Reads tokenizer.json and tokenizer_config.json (optional) of a model directory.
   * @example const tok = Tokenizer.fromDirectory("./Llama-3.1-8B-Instruct");
   */
  static fromDirectory(dir: string): Tokenizer {
    const file = path.join(dir, "tokenizer.json");
    const { text: jsonText, json } = readJson(file, "tokenizer");
    const configFile = path.join(dir, "tokenizer_config.json");
    const { text: configText, json: config } = fs.existsSync(configFile)
      ? readJson(configFile, "tokenizer config")
      : { text: "{}", json: {} };
    const templateFile = readTemplateFile(path.join(dir, "chat_template.jinja"));
    try {
      return new Tokenizer({ json, jsonText, config, configText }, templateFile);
    } catch (err) {
      throw new Error(`${file}: cannot be used as a tokenizer with ${configFile} (${(err as Error).message})`);
    }
  }

  /**
   * Token ids of `text`; special tokens (a BOS, say) are added as tokenizer.json's post-processor says.
   * @example
   * const prompt = tok.encode("Once upon a time");                          // [BOS, ...] where the tokenizer adds one
   * const continuation = tok.encode(" there", { addSpecialTokens: false }); // no BOS in the middle of a sequence
   */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== "string") throw new TypeError(`encode: text must be a string, got ${show(text)}`);
    return this.encodeChecked(text, encodeOptions(options, "encode"));
  }

  /**
   * The ids `encode` gives, encoded on a worker thread for long texts, so that the event loop
   * keeps running meanwhile (a megabyte of text takes the tokenizer seconds).
   * @example const ids = await tok.encodeAsync(fs.readFileSync("book.txt", "utf8"));
   */
  async encodeAsync(text: string, options: { addSpecialTokens?: boolean } = {}): Promise<number[]> {
    if (typeof text !== "string") throw new TypeError(`encodeAsync: text must be a string, got ${show(text)}`);
    const addSpecialTokens = encodeOptions(options, "encodeAsync");
    this.thread.checkOpen();
    if (text.length < inlineEncodeChars || this.thread.unavailable) return this.encodeChecked(text, addSpecialTokens);
    try {
      return await this.thread.encode(text, addSpecialTokens);
    } catch (err) {
      // Where no worker can start, the text is encoded here, as it was before there was one.
      if (err instanceof EncoderThreadError && this.thread.unavailable && !this.thread.closed)
        return this.encodeChecked(text, addSpecialTokens);
      throw err;
    }
  }

  /** encode, here, of text and options already checked. */
  private encodeChecked(text: string, addSpecialTokens: boolean): number[] {
    return this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * Ends encodeAsync's worker thread, which otherwise lives as long as the process (a model's
   * dispose() disposes its tokenizer); `encode` and the other methods still work, encodeAsync
   * throws.
   * @example await tok.dispose();
   */
  async dispose(): Promise<void> {
    await this.thread.close();
  }

  /**
   * The same as dispose(), for `await using`.
   * @example await using tok = Tokenizer.fromDirectory("./Llama-3.1-8B-Instruct");
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /**
   * Text of token ids. Every id must be an integer in int32 range; ids beyond this tokenizer's
   * vocabulary (a model may have padding rows) decode to nothing, and so do no ids.
   * @example tok.decode(tok.encode("Hello"), { skipSpecialTokens: true }) // "Hello"
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    checkTokenIds(ids, 2 ** 31, "decode: ids");
    const o = optionsObject(options, "decode: options");
    rejectUnknownOptions(o, ["skipSpecialTokens"], "decode: options");
    const skipSpecialTokens = optionalBoolean(o.skipSpecialTokens, "decode: skipSpecialTokens") ?? false;
    // The underlying tokenizer refuses an empty list.
    if (ids.length === 0) return "";
    return this.hf.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  /**
   * The bytes token `id` stands for, which its decoded text cannot always show (a token may hold
   * part of a UTF-8 character): byte-level tokens mapped back to bytes, SentencePiece byte tokens
   * (<0x0A>) as their byte, any other token as the UTF-8 of its text. Empty for an id beyond the
   * tokenizer's vocabulary.
   * @example Buffer.from(tok.tokenBytes(tok.encode(" hello", { addSpecialTokens: false })[0])).toString() // " hello"
   */
  tokenBytes(id: number): number[] {
    checkTokenIds([id], 2 ** 31, "tokenBytes: id");
    const piece = this.hf.id_to_token(id);
    if (piece === undefined || piece === null) return [];
    const byteToken = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (byteToken) return [Number.parseInt(byteToken[1], 16)];
    if (this.byteLevel && [...piece].every((c) => byteOfStandIn.has(c))) return [...piece].map((c) => byteOfStandIn.get(c)!);
    return [...Buffer.from(this.hf.decode([id], { skip_special_tokens: false }), "utf8")];
  }

  /**
   * The id of one token as the vocabulary spells it (special tokens such as "</s>" included), or
   * undefined if the vocabulary has no such token.
   * @example const stopIds = ["<|eot_id|>", "<|end_of_text|>"].map((t) => tok.tokenId(t)).filter((id) => id !== undefined);
   */
  tokenId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /**
   * Whether messages can be rendered: the model has a chat template and it parses (one that does
   * not is reported by applyChatTemplate).
   * @example const prompt = tok.hasChatTemplate ? tok.applyChatTemplate(messages, { addGenerationPrompt: true }) : text;
   */
  get hasChatTemplate(): boolean {
    return this.chatTemplateProblem === undefined;
  }

  /**
   * Why messages cannot be rendered (no chat template, or one that does not parse); undefined when they can.
   * @example if (tok.chatTemplateProblem) console.warn(`chat is off: ${tok.chatTemplateProblem}`);
   */
  get chatTemplateProblem(): string | undefined {
    if (!this.template) return "this model has no chat template (no chat_template.jinja, none in tokenizer_config.json)";
    return "problem" in this.template ? this.template.problem : undefined;
  }

  /**
   * Renders messages with the model's chat template (the prompt then needs no added special
   * tokens). `bosToken` is what the template's bos_token stands for (default the tokenizer's; ""
   * renders messages that go on from a conversation already held, which has its BOS).
   * @example tok.applyChatTemplate([{ role: "user", content: "Hello" }], { addGenerationPrompt: true })
   */
  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean; bosToken?: string } = {}): string {
    if (!this.template) throw new Error(`${this.chatTemplateProblem}; pass plain text instead`);
    if ("problem" in this.template) throw new Error(this.template.problem);
    try {
      return this.template.render({
        messages,
        bos_token: options.bosToken ?? this.bosToken ?? "",
        eos_token: this.eosToken ?? "",
        add_generation_prompt: options.addGenerationPrompt ?? true,
      });
    } catch (err) {
      throw new ChatTemplateError(renderProblem(err));
    }
  }
}
