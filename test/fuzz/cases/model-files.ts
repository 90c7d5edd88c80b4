// A tiny Llama checkpoint written from scratch for the checkpoint fuzz, and a safetensors reader
// of our own (following the format's specification, not the library's code) that says what a
// file holds or why it is malformed.
import * as fs from "node:fs";
import * as path from "node:path";
import { fixtureRoot } from "../../helpers/fixtures";
import type { Random } from "../../helpers/reference";

export const fixtureDir = path.join(fixtureRoot, "llama-tiny");

export interface TensorData {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

const itemBytes: Record<string, number> = {
  F64: 8,
  I64: 8,
  U64: 8,
  F32: 4,
  I32: 4,
  U32: 4,
  F16: 2,
  BF16: 2,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** config.json of the tiny model (vocab of the fixture tokenizer, 2 layers, hidden 8). */
export function tinyConfig(): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 4,
    vocab_size: 384,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    bos_token_id: 0,
    eos_token_id: 1,
    tie_word_embeddings: false,
    torch_dtype: "float32",
    transformers_version: "4.44.0",
  };
}

function floatBytes(rng: Random, n: number, dtype: string): Buffer {
  const values = rng.floats(n);
  if (dtype === "F32") return Buffer.from(values.buffer);
  // 16-bit: the top half of the f32 bits (bf16) or a plain small f16 pattern; the contents only need to be distinct.
  const out = new Uint16Array(n);
  const bits = new Uint32Array(values.buffer);
  for (let i = 0; i < n; i++) out[i] = dtype === "BF16" ? bits[i] >>> 16 : 0x3000 + ((bits[i] >>> 13) & 0x7ff);
  return Buffer.from(out.buffer);
}

/** Every tensor the tiny model needs, with random contents. */
export function tinyTensors(rng: Random, dtype: "F32" | "F16" | "BF16"): TensorData[] {
  const c = tinyConfig() as Record<string, number>;
  const H = c.hidden_size,
    d = c.head_dim,
    q = c.num_attention_heads * d,
    kv = c.num_key_value_heads * d,
    I = c.intermediate_size,
    V = c.vocab_size;
  const shapes: Array<[string, number[]]> = [
    ["model.embed_tokens.weight", [V, H]],
    ["model.norm.weight", [H]],
    ["lm_head.weight", [V, H]],
  ];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    shapes.push(
      [`${p}input_layernorm.weight`, [H]],
      [`${p}self_attn.q_proj.weight`, [q, H]],
      [`${p}self_attn.k_proj.weight`, [kv, H]],
      [`${p}self_attn.v_proj.weight`, [kv, H]],
      [`${p}self_attn.o_proj.weight`, [H, q]],
      [`${p}post_attention_layernorm.weight`, [H]],
      [`${p}mlp.gate_proj.weight`, [I, H]],
      [`${p}mlp.up_proj.weight`, [I, H]],
      [`${p}mlp.down_proj.weight`, [H, I]],
    );
  }
  return shapes.map(([name, shape]) => ({
    name,
    dtype,
    shape,
    bytes: floatBytes(
      rng,
      shape.reduce((a, b) => a * b, 1),
      dtype,
    ),
  }));
}

export interface SafetensorsParts {
  header: Record<string, unknown>;
  data: Buffer;
}

/** Header and data of a valid file: tensors laid out in `order` (indices into `tensors`), back to back. */
export function layout(tensors: TensorData[], order: number[] = tensors.map((_, i) => i)): SafetensorsParts {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const chunks: Buffer[] = [];
  let at = 0;
  for (const i of order) {
    const t = tensors[i];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.bytes.length] };
    chunks.push(t.bytes);
    at += t.bytes.length;
  }
  return { header, data: Buffer.concat(chunks) };
}

/** The bytes of a file: length prefix, header text padded with spaces to a multiple of 8 (plus `extraPadding`), data. */
export function fileBytes(headerText: string, data: Buffer, extraPadding = 0): Buffer {
  let text = headerText;
  while ((8 + Buffer.byteLength(text)) % 8) text += " ";
  text += " ".repeat(extraPadding);
  const json = Buffer.from(text);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

export type Parsed = { ok: true; tensors: Map<string, { dtype: string; shape: number[]; bytes: Buffer }> } | { ok: false; why: string };

/**
 * Reads a safetensors file as the format specifies: an 8-byte little-endian header length, a
 * JSON object of { dtype, shape, data_offsets } entries (and an optional __metadata__), and a
 * data region the tensors cover exactly, without gaps or overlaps, in any order.
 */
export function parseSafetensors(file: Buffer): Parsed {
  if (file.length < 8) return { ok: false, why: "shorter than the length prefix" };
  const length = file.readBigUInt64LE(0);
  if (length > BigInt(file.length - 8)) return { ok: false, why: "header length past the end of the file" };
  let header: unknown;
  try {
    header = JSON.parse(file.subarray(8, 8 + Number(length)).toString("utf8"));
  } catch {
    return { ok: false, why: "header is not JSON" };
  }
  if (!header || typeof header !== "object" || Array.isArray(header)) return { ok: false, why: "header is not an object" };
  const data = file.subarray(8 + Number(length));
  const spans: Array<[number, number]> = [];
  const tensors = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") continue;
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== "object") return { ok: false, why: `${name}: entry is not an object` };
    if (typeof e.dtype !== "string" || !(e.dtype in itemBytes)) return { ok: false, why: `${name}: unknown dtype` };
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      return { ok: false, why: `${name}: bad shape` };
    const o = e.data_offsets;
    if (!Array.isArray(o) || o.length !== 2 || !o.every((x) => Number.isSafeInteger(x) && x >= 0) || o[0] > o[1])
      return { ok: false, why: `${name}: bad offsets` };
    const elements = (e.shape as number[]).reduce((a, b) => a * b, 1);
    if (o[1] - o[0] !== elements * itemBytes[e.dtype]) return { ok: false, why: `${name}: offsets do not match the shape` };
    if (o[1] > data.length) return { ok: false, why: `${name}: past the end of the data` };
    spans.push([o[0], o[1]]);
    tensors.set(name, { dtype: e.dtype, shape: e.shape as number[], bytes: data.subarray(o[0], o[1]) });
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let covered = 0;
  for (const [begin, end] of spans) {
    if (begin !== covered) return { ok: false, why: begin < covered ? "tensors overlap" : "a gap between tensors" };
    covered = end;
  }
  if (covered !== data.length) return { ok: false, why: `the tensors cover ${covered} of ${data.length} data bytes` };
  return { ok: true, tensors };
}

/** Copies the fixture's tokenizer files into `dir`. */
export function copyTokenizer(dir: string): void {
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) fs.copyFileSync(path.join(fixtureDir, f), path.join(dir, f));
}
