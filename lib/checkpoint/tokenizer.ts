// tokenizer.json and the chat template of tokenizer_config.json, through well-kept libraries:
// @huggingface/tokenizers for encoding, @huggingface/jinja for the template.
import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { checkTokenIds } from "./token-ids";

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

function readJson(file: string, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${file}: ${e.code === "ENOENT" ? `not found (the ${what} is needed)` : `cannot be read as JSON (${e.message})`}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error(`${file}: must hold a JSON object (the ${what})`);
  return json as Record<string, unknown>;
}

/**
 * A model's tokenizer.
 * @example
 * const tok = Tokenizer.fromDirectory("./Llama-3.1-8B-Instruct");
 * const ids = tok.encode(tok.applyChatTemplate([{ role: "user", content: "Hi" }]), { addSpecialTokens: false });
 * console.log(tok.decode(ids));
 */
export class Tokenizer {
  readonly bosToken?: string;
  readonly eosToken?: string;
  private readonly hf: HfTokenizer;
  private readonly template?: Template;

  private constructor(json: Record<string, unknown>, config: Record<string, unknown>) {
    this.hf = new HfTokenizer(json, config);
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    const chat = config.chat_template;
    // A list of named templates is allowed; the "default" one is the chat template.
    const source = Array.isArray(chat)
      ? (chat.find((t) => t?.name === "default")?.template as string | undefined)
      : (chat as string | undefined);
    if (source !== undefined && typeof source !== "string")
      throw new TypeError(`chat_template must be a string or a list of named templates, got ${typeof source}`);
    if (typeof source === "string") this.template = new Template(source);
  }

  /**
   * Reads tokenizer.json and tokenizer_config.json (optional) of a model directory.
   * @example const tok = Tokenizer.fromDirectory("./Llama-3.1-8B-Instruct");
   */
  static fromDirectory(dir: string): Tokenizer {
    const file = path.join(dir, "tokenizer.json");
    const json = readJson(file, "tokenizer");
    const configFile = path.join(dir, "tokenizer_config.json");
    const config = fs.existsSync(configFile) ? readJson(configFile, "tokenizer config") : {};
    try {
      return new Tokenizer(json, config);
    } catch (err) {
      throw new Error(`${file}: cannot be used as a tokenizer with ${configFile} (${(err as Error).message})`);
    }
  }

  /** Token ids of `text`; special tokens (a BOS, say) are added as tokenizer.json's post-processor says. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /**
   * Text of token ids. Every id must be an integer in int32 range; ids beyond this tokenizer's
   * vocabulary (a model may have padding rows) decode to nothing.
   * @example tok.decode(tok.encode("Hello"), { skipSpecialTokens: true }) // "Hello"
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    checkTokenIds(ids, 2 ** 31, "decode: ids");
    return this.hf.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  get hasChatTemplate(): boolean {
    return this.template !== undefined;
  }

  /**
   * Renders messages with the model's chat template (the prompt then needs no added special tokens).
   * @example tok.applyChatTemplate([{ role: "user", content: "Hello" }], { addGenerationPrompt: true })
   */
  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    if (!this.template) throw new Error("this model's tokenizer_config.json has no chat_template; pass plain text instead");
    return this.template.render({
      messages,
      bos_token: this.bosToken ?? "",
      eos_token: this.eosToken ?? "",
      add_generation_prompt: options.addGenerationPrompt ?? true,
    });
  }
}
