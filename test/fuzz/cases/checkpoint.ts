// Child side of the checkpoint fuzz: a model directory with one file mutated (a safetensors
// shard, the shard index, config.json, tokenizer.json or tokenizer_config.json), loaded with
// loadModel. The load must fail with a useful Error or give a model whose weights are the bytes
// the files hold (read by our own parser) and which generates correctly.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadModel, type Model, type Tensor, Tokenizer } from "../../../lib";
import { Random } from "../../helpers/reference";
import { attempt, expectMemoryBack, expectUsefulError, fail, liveCpuBytes, sameBytes } from "../harness/checks";
import { copyTokenizer, fileBytes, layout, parseSafetensors, type TensorData, tinyConfig, tinyTensors } from "./model-files";

export type SafetensorsMutation =
  | { kind: "none" }
  | { kind: "padding"; spaces: number }
  | { kind: "reorder" }
  | { kind: "lengthPrefix"; delta: number }
  | { kind: "lengthValue"; value: string }
  | { kind: "field"; tensor: number; field: "dtype" | "shape" | "data_offsets" | "entry"; value: unknown }
  | { kind: "offsets"; tensor: number; shift: number; which: "begin" | "end" | "both" }
  | { kind: "truncate"; keep: number }
  | { kind: "extend"; bytes: number }
  | { kind: "flip"; position: number; xor: number }
  | { kind: "metadata"; value: unknown }
  | { kind: "headerText"; text: string }
  | {
      kind: "index";
      change: "missingShard" | "wrongShard" | "missingTensor" | "notObject" | "badJson" | "nonString" | "extraName" | "dropName";
      tensor: number;
    };

export type CheckpointCase =
  | { target: "bigTensor"; rows: number }
  | {
      target: "loadOptions";
      options: Record<string, unknown>;
      onProgress: "none" | "function" | "throws" | "odd";
      signal: "none" | "aborted" | "fake" | "abortMidway";
    }
  | { target: "safetensors"; seed: number; dtype: "F32" | "F16" | "BF16"; shards: number; shard: number; mutation: SafetensorsMutation }
  | { target: "config"; seed: number; field: string; value: unknown; remove: boolean; text?: string }
  | {
      target: "tokenizer";
      seed: number;
      file: "tokenizer.json" | "tokenizer_config.json";
      path: number;
      value: unknown;
      remove: boolean;
      text?: string;
      template?: string;
      promptTokens?: boolean;
      prompt: string | Array<{ role: unknown; content: unknown }>;
    };

const weightNames = (l: number) => ({
  inputNorm: [`model.layers.${l}.input_layernorm.weight`],
  qkv: ["q_proj", "k_proj", "v_proj"].map((p) => `model.layers.${l}.self_attn.${p}.weight`),
  o: [`model.layers.${l}.self_attn.o_proj.weight`],
  postNorm: [`model.layers.${l}.post_attention_layernorm.weight`],
  gateUp: ["gate_proj", "up_proj"].map((p) => `model.layers.${l}.mlp.${p}.weight`),
  down: [`model.layers.${l}.mlp.down_proj.weight`],
});

/** Fails unless every weight of `model` holds the bytes `files` say its source tensors hold. */
function expectWeightsMatch(model: Model, files: Map<string, { bytes: Buffer }>, what: string): void {
  const w = model.decoder.weights;
  const check = (t: Tensor, names: string[], label: string) => {
    const want = Buffer.concat(names.map((n) => files.get(n)?.bytes ?? fail(`${what}: loaded, but the files have no tensor ${n}`)));
    if (!sameBytes(t.toArray(), want))
      fail(`${what}: loaded, but ${label} does not hold the bytes the file's header gives for ${names.join(" + ")} (silently wrong)`);
  };
  check(w.embed, ["model.embed_tokens.weight"], "the embedding");
  check(w.norm, ["model.norm.weight"], "the final norm");
  check(w.lmHead, ["lm_head.weight"], "lm_head");
  w.layers.forEach((layer, l) => {
    for (const [key, names] of Object.entries(weightNames(l)))
      check(layer[key as keyof typeof layer] as Tensor, names, `layer ${l} ${key}`);
  });
}

function mutateSafetensors(tensors: TensorData[], m: SafetensorsMutation, rng: Random): Buffer {
  const order = m.kind === "reorder" ? rng.shuffle(tensors.map((_, i) => i)) : tensors.map((_, i) => i);
  const { header, data } = layout(tensors, order);
  const names = tensors.map((t) => t.name);
  const entry = (i: number) => header[names[i % names.length]] as { data_offsets: number[] };
  let text = JSON.stringify(header);
  let body = data;
  switch (m.kind) {
    case "field": {
      const name = names[m.tensor % names.length];
      if (m.field === "entry") header[name] = m.value;
      else (header[name] as Record<string, unknown>)[m.field] = m.value;
      text = JSON.stringify(header, (_k, v) => (typeof v === "bigint" ? Number(v) : v));
      break;
    }
    case "offsets": {
      const o = entry(m.tensor).data_offsets;
      if (m.which !== "end") o[0] += m.shift;
      if (m.which !== "begin") o[1] += m.shift;
      text = JSON.stringify(header);
      break;
    }
    case "metadata":
      header.__metadata__ = m.value;
      text = JSON.stringify(header, (_k, v) => (typeof v === "bigint" ? Number(v) : v));
      break;
    case "headerText":
      text = m.text;
      break;
    case "extend":
      body = Buffer.concat([data, Buffer.alloc(m.bytes, 7)]);
      break;
  }
  let file = fileBytes(text, body, m.kind === "padding" ? m.spaces : 0);
  if (m.kind === "lengthPrefix") file.writeBigUInt64LE(BigInt(Math.max(0, Number(file.readBigUInt64LE(0)) + m.delta)), 0);
  if (m.kind === "lengthValue") file.writeBigUInt64LE(BigInt.asUintN(64, BigInt(m.value)), 0);
  if (m.kind === "truncate") file = file.subarray(0, m.keep % file.length);
  if (m.kind === "flip") file[m.position % Math.min(file.length, 8 + text.length)] ^= m.xor || 1;
  return file;
}

function writeCheckpoint(
  dir: string,
  c: Extract<CheckpointCase, { target: "safetensors" }>,
  rng: Random,
): { files: Map<string, Buffer>; index?: string } {
  const tensors = tinyTensors(rng, c.dtype);
  const shards = Math.max(1, c.shards);
  const files = new Map<string, Buffer>();
  const groups: TensorData[][] = Array.from({ length: shards }, () => []);
  tensors.forEach((t, _i) => groups[shards === 1 ? 0 : rng.int(0, shards - 1)].push(t));
  const mutated = c.mutation.kind === "index" ? -1 : c.shard % shards;
  const weightMap: Record<string, unknown> = {};
  groups.forEach((group, s) => {
    const name = shards === 1 ? "model.safetensors" : `model-0000${s + 1}-of-0000${shards}.safetensors`;
    files.set(
      name,
      s === mutated ? mutateSafetensors(group, c.mutation, rng) : fileBytes(JSON.stringify(layout(group).header), layout(group).data),
    );
    for (const t of group) weightMap[t.name] = name;
  });
  for (const [name, bytes] of files) fs.writeFileSync(path.join(dir, name), bytes);
  if (shards === 1 && c.mutation.kind !== "index") return { files };
  let index = JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap });
  if (c.mutation.kind === "index") {
    const name = tensors[c.mutation.tensor % tensors.length].name;
    switch (c.mutation.change) {
      case "missingShard":
        weightMap[name] = "model-00009-of-00009.safetensors";
        break;
      case "wrongShard":
        weightMap[name] = [...files.keys()].find((f) => f !== weightMap[name]) ?? "elsewhere.safetensors";
        break;
      case "missingTensor":
        weightMap[`${name}.missing`] = weightMap[name];
        break;
      case "nonString":
        weightMap[name] = 7;
        break;
      case "extraName":
        weightMap["model.extra.weight"] = weightMap[name];
        break;
      case "dropName":
        delete weightMap[name];
        break;
    }
    index =
      c.mutation.change === "notObject"
        ? JSON.stringify({ weight_map: [1, 2] })
        : c.mutation.change === "badJson"
          ? index.slice(0, index.length / 2)
          : JSON.stringify({ weight_map: weightMap });
  }
  fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), index);
  return { files, index };
}

/** Which names the index maps to which file, as the format intends; undefined if it is unusable. */
function indexMap(index: string | undefined): Map<string, string> | undefined {
  if (index === undefined) return undefined;
  try {
    const map = JSON.parse(index).weight_map;
    if (!map || typeof map !== "object" || Array.isArray(map)) return undefined;
    const out = new Map<string, string>();
    for (const [k, v] of Object.entries(map)) {
      if (typeof v !== "string") return undefined;
      out.set(k, v);
    }
    return out;
  } catch {
    return undefined;
  }
}

/** The tensors of the checkpoint as our reader sees them, or why it is unusable. */
function expectedCheckpoint(
  dir: string,
  written: { files: Map<string, Buffer>; index?: string },
): { ok: true; tensors: Map<string, { dtype: string; shape: number[]; bytes: Buffer }> } | { ok: false; why: string } {
  const all = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
  const map = written.index === undefined && written.files.size === 1 ? undefined : indexMap(written.index);
  if (written.index !== undefined && !map) return { ok: false, why: "unusable index" };
  const parsed = new Map<string, ReturnType<typeof parseSafetensors>>();
  for (const [name, bytes] of written.files) parsed.set(name, parseSafetensors(bytes));
  if (map) {
    for (const [tensor, file] of map) {
      const p = fs.existsSync(path.join(dir, file)) ? parsed.get(file) : undefined;
      if (!p) return { ok: false, why: `index names a missing file ${file}` };
      if (!p.ok) return { ok: false, why: `${file}: ${p.why}` };
      const t = p.tensors.get(tensor);
      if (!t) return { ok: false, why: `index names ${tensor}, absent from ${file}` };
      all.set(tensor, t);
    }
    // Files the index does not name are not read by anyone, but those it names must be whole.
    return { ok: true, tensors: all };
  }
  const p = parsed.get("model.safetensors")!;
  return p.ok ? { ok: true, tensors: p.tensors } : { ok: false, why: p.why };
}

const needed = (() => {
  const c = tinyConfig() as Record<string, number>;
  const names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"];
  for (let l = 0; l < c.num_hidden_layers; l++) for (const list of Object.values(weightNames(l))) names.push(...list);
  return names;
})();

let baseline: { tokens: number[] } | undefined;

async function generateTokens(model: Model, prompt: string | Array<{ role: unknown; content: unknown }>, count = 4): Promise<number[]> {
  const tokens: number[] = [];
  for await (const chunk of model.generate(prompt as never, { maxNewTokens: count, stopAtEos: false })) tokens.push(...chunk.tokens);
  return tokens;
}

function writeBaseModel(dir: string, seed: number): void {
  const tensors = tinyTensors(new Random(seed), "F32");
  const { header, data } = layout(tensors);
  fs.writeFileSync(path.join(dir, "model.safetensors"), fileBytes(JSON.stringify(header), data));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(tinyConfig()));
  copyTokenizer(dir);
}

/** Greedy tokens of the unmutated base model (seed 1), computed once per child. */
async function baselineTokens(root: string): Promise<number[]> {
  if (baseline) return baseline.tokens;
  const dir = fs.mkdtempSync(path.join(root, "base-"));
  writeBaseModel(dir, 1);
  const model = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20 });
  try {
    baseline = { tokens: await generateTokens(model, "Hello there") };
  } finally {
    await model.dispose();
  }
  return baseline.tokens;
}

const inertConfigKeys = new Set([
  "transformers_version",
  "model_type",
  "torch_dtype",
  "use_cache",
  "initializer_range",
  "pretraining_tp",
  "pad_token_id",
  "unknown_field",
]);

/** Every leaf path of a JSON value, in a stable order. */
function leafPaths(
  value: unknown,
  prefix: Array<string | number> = [],
  out: Array<Array<string | number>> = [],
): Array<Array<string | number>> {
  if (value && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
    if (entries.length === 0) out.push(prefix);
    for (const [k, v] of entries) leafPaths(v, [...prefix, k], out);
    if (prefix.length) out.push(prefix); // the container itself may be replaced too
  } else out.push(prefix);
  return out;
}

function setPath(root: unknown, p: Array<string | number>, value: unknown, remove: boolean): unknown {
  if (p.length === 0) return value;
  let at = root as Record<string | number, unknown>;
  for (const k of p.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  const last = p[p.length - 1];
  if (remove) {
    if (Array.isArray(at)) at.splice(last as number, 1);
    else delete at[last];
  } else at[last] = value;
  return root;
}

function jsonText(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? Number(v) : v)) ?? "null";
}

let root: string | undefined;

export async function runCase(c: CheckpointCase): Promise<void> {
  root ??= fs.mkdtempSync(path.join(os.tmpdir(), "lt-fuzz-ckpt-"));
  if (c.target === "bigTensor") return runBigTensor(root, c.rows);
  if (c.target === "loadOptions") return runLoadOptions(root, c);
  const base = c.target === "safetensors" ? undefined : await baselineTokens(root);
  const before = await liveCpuBytes();
  const dir = fs.mkdtempSync(path.join(root, "case-"));
  try {
    const rng = new Random(c.seed);
    let what: string;
    let expected: { ok: true; tensors?: Map<string, { bytes: Buffer }> } | { ok: false; why: string } = { ok: true };
    let prompt: string | Array<{ role: unknown; content: unknown }> = "Hello there";
    let compareTokens = false;
    if (c.target === "safetensors") {
      what = `checkpoint of ${c.shards} file(s), ${c.dtype}, mutation ${JSON.stringify(c.mutation, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)).slice(0, 300)}`;
      const written = writeCheckpoint(dir, c, rng);
      fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(tinyConfig()));
      copyTokenizer(dir);
      const parsed = expectedCheckpoint(dir, written);
      if (!parsed.ok) expected = parsed;
      else {
        const problem =
          needed.find((n) => !parsed.tensors.has(n)) ??
          needed.find(
            (n) =>
              parsed.tensors.get(n)!.dtype !== c.dtype ||
              parsed.tensors.get(n)!.shape.join() !==
                tinyTensors(new Random(c.seed), c.dtype)
                  .find((t) => t.name === n)!
                  .shape.join(),
          );
        expected = problem
          ? { ok: false, why: `${problem} is missing or not what config.json implies` }
          : { ok: true, tensors: parsed.tensors };
      }
    } else if (c.target === "config") {
      writeBaseModel(dir, 1);
      const config = tinyConfig();
      if (c.remove) delete config[c.field];
      else config[c.field] = c.value;
      fs.writeFileSync(path.join(dir, "config.json"), c.text ?? jsonText(config));
      what = `config.json ${c.text !== undefined ? `text ${JSON.stringify(c.text).slice(0, 120)}` : c.remove ? `without ${c.field}` : `with ${c.field} = ${jsonText(c.value).slice(0, 120)}`}`;
      compareTokens =
        c.text === undefined &&
        (inertConfigKeys.has(c.field) || (!c.remove && jsonText(c.value) === jsonText((tinyConfig() as Record<string, unknown>)[c.field])));
    } else {
      writeBaseModel(dir, 1);
      const file = path.join(dir, c.file);
      const json = JSON.parse(fs.readFileSync(file, "utf8"));
      const paths = leafPaths(json);
      const p = c.template !== undefined ? ["chat_template"] : paths[c.path % paths.length];
      if (c.promptTokens && c.file === "tokenizer.json") {
        // The ids of the tokens this prompt encodes to (special tokens too) replaced by the odd value.
        const used = new Set((await baseTokenIds(dir, c.prompt)) ?? []);
        for (const [token, id] of Object.entries(json.model.vocab as Record<string, number>))
          if (used.has(id)) json.model.vocab[token] = c.value;
        for (const added of json.added_tokens as Array<{ id: unknown }>) if (used.has(added.id as number)) added.id = c.value;
        fs.writeFileSync(file, jsonText(json));
      } else fs.writeFileSync(file, c.text ?? jsonText(setPath(json, p, c.template ?? c.value, c.template === undefined && c.remove)));
      prompt = c.prompt;
      what = `${c.file} ${c.promptTokens ? `with the prompt's token ids = ${jsonText(c.value)}` : c.text !== undefined ? `text ${JSON.stringify(c.text).slice(0, 120)}` : c.template !== undefined ? `with chat_template ${JSON.stringify(c.template).slice(0, 160)}` : c.remove ? `without ${p.join(".")}` : `with ${p.join(".")} = ${jsonText(c.value).slice(0, 120)}`}, prompt ${jsonText(prompt).slice(0, 80)}`;
    }

    const loaded = await attempt(() => loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20 }));
    if (!loaded.ok) {
      expectUsefulError(loaded.error, what);
      return;
    }
    const model = loaded.value;
    try {
      if (!expected.ok) fail(`${what}: loaded, but the checkpoint is malformed (${expected.why}); loadModel must throw`);
      if (expected.tensors) expectWeightsMatch(model, expected.tensors, what);
      expectSaneConfig(model, what);
      const vocab = model.config.vocabSize;
      const ids = await attempt(() =>
        typeof prompt === "string"
          ? model.tokenizer.encode(prompt)
          : model.tokenizer.encode(model.tokenizer.applyChatTemplate(prompt as never), { addSpecialTokens: false }),
      );
      if (!ids.ok) {
        expectUsefulError(ids.error, `${what}, encoding the prompt`);
        return;
      }
      const badId = ids.value.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
      const generated = await attempt(() => generateTokens(model, prompt));
      if (!generated.ok) {
        expectUsefulError(generated.error, `${what}, generating`);
        return;
      }
      if (badId !== undefined)
        fail(
          `${what}: the tokenizer gave token id ${badId} (vocabulary 0..${vocab - 1}) and generate ran with it instead of throwing (silently wrong)`,
        );
      const outOfVocab = generated.value.find((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
      if (outOfVocab !== undefined) fail(`${what}: generated token ${outOfVocab}, outside the vocabulary`);
      if (compareTokens && base && generated.value.join() !== base.join())
        fail(
          `${what}: generated [${generated.value}] but the unmutated model generates [${base}] and this field does not take part in the computation`,
        );
    } finally {
      await model.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await expectMemoryBack(before, `checkpoint case ${c.target}`);
  }
}

/**
 * A checkpoint whose embedding is over 4 GiB (bf16 [rows, 16]), as real ones have: a sparse
 * file, so only the rows with markers take disk space. It must load, with the markers where
 * the file has them, or fail with a useful Error.
 */
async function runBigTensor(rootDir: string, rows: number): Promise<void> {
  const dir = fs.mkdtempSync(path.join(rootDir, "big-"));
  const before = await liveCpuBytes();
  try {
    const config = {
      ...tinyConfig(),
      vocab_size: rows,
      hidden_size: 16,
      head_dim: 8,
      num_hidden_layers: 1,
      tie_word_embeddings: true,
      torch_dtype: "bfloat16",
    };
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
    copyTokenizer(dir);
    const rng = new Random(5);
    const small = tinyTensors(rng, "BF16").filter(
      (t) => !t.name.startsWith("model.layers.1.") && t.name !== "lm_head.weight" && t.name !== "model.embed_tokens.weight",
    );
    // The config's hidden size is 16: rebuild the small tensors at that width.
    const c = config as unknown as Record<string, number>;
    const H = 16,
      d = 8,
      q = c.num_attention_heads * d,
      kv = c.num_key_value_heads * d,
      I = c.intermediate_size;
    const shapes: Record<string, number[]> = {
      "model.norm.weight": [H],
      "model.layers.0.input_layernorm.weight": [H],
      "model.layers.0.self_attn.q_proj.weight": [q, H],
      "model.layers.0.self_attn.k_proj.weight": [kv, H],
      "model.layers.0.self_attn.v_proj.weight": [kv, H],
      "model.layers.0.self_attn.o_proj.weight": [H, q],
      "model.layers.0.post_attention_layernorm.weight": [H],
      "model.layers.0.mlp.gate_proj.weight": [I, H],
      "model.layers.0.mlp.up_proj.weight": [I, H],
      "model.layers.0.mlp.down_proj.weight": [H, I],
    };
    const others = small.map((t) => ({
      ...t,
      shape: shapes[t.name],
      bytes: Buffer.alloc(shapes[t.name].reduce((a, b) => a * b, 1) * 2, 0x3c),
    }));
    const embedBytes = rows * H * 2;
    const header: Record<string, unknown> = {
      "model.embed_tokens.weight": { dtype: "BF16", shape: [rows, H], data_offsets: [0, embedBytes] },
    };
    let at = embedBytes;
    for (const t of others) {
      header[t.name] = { dtype: "BF16", shape: t.shape, data_offsets: [at, at + t.bytes.length] };
      at += t.bytes.length;
    }
    const head = fileBytes(JSON.stringify(header), Buffer.alloc(0));
    const file = path.join(dir, "model.safetensors");
    const fd = fs.openSync(file, "w");
    const markers = [0, Math.floor(rows / 2), rows - 1].map((row, i) => ({ row, bytes: Buffer.alloc(H * 2, 0x41 + i) }));
    try {
      fs.writeSync(fd, head, 0, head.length, 0);
      for (const m of markers) fs.writeSync(fd, m.bytes, 0, m.bytes.length, head.length + m.row * H * 2);
      let position = head.length + embedBytes;
      for (const t of others) {
        fs.writeSync(fd, t.bytes, 0, t.bytes.length, position);
        position += t.bytes.length;
      }
    } finally {
      fs.closeSync(fd);
    }
    const what = `a checkpoint with a ${(embedBytes / 2 ** 30).toFixed(2)} GiB embedding`;
    const loaded = await attempt(() => loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20 }));
    if (!loaded.ok) {
      expectUsefulError(loaded.error, what);
      return;
    }
    try {
      const embed = loaded.value.decoder.weights.embed;
      for (const m of markers) {
        const row = embed.rows(m.row, 1);
        try {
          if (!sameBytes(row.toArray(), m.bytes)) fail(`${what}: row ${m.row} of the embedding does not hold the file's bytes`);
        } finally {
          row.dispose();
        }
      }
    } finally {
      await loaded.value.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await expectMemoryBack(before, "the checkpoint over 4 GiB");
  }
}

/** Why loadModel options are invalid, if they are. */
function invalidLoadOption(c: Extract<CheckpointCase, { target: "loadOptions" }>): string | undefined {
  const o = c.options;
  const floatType = (v: unknown) => v == null || v === "f32" || v === "f16" || v === "bf16";
  if (!(o.device == null || o.device === "cpu")) return "device (no CUDA here)";
  if (!floatType(o.dtype)) return "dtype";
  if (!floatType(o.computeDType)) return "computeDType";
  if (!(o.kvCacheBytes == null || (typeof o.kvCacheBytes === "number" && Number.isFinite(o.kvCacheBytes) && o.kvCacheBytes >= 0)))
    return "kvCacheBytes";
  if (!(o.pageSize == null || (Number.isInteger(o.pageSize) && (o.pageSize as number) >= 1))) return "pageSize";
  if (c.onProgress === "odd") return "onProgress (not a function)";
  if (c.signal === "fake") return "signal (not an AbortSignal)";
  if (c.signal === "aborted") return "an aborted signal";
  return undefined;
}

/** loadModel options of every kind on the base model: a useful Error, or the base model's greedy tokens. */
async function runLoadOptions(rootDir: string, c: Extract<CheckpointCase, { target: "loadOptions" }>): Promise<void> {
  const base = await baselineTokens(rootDir);
  const before = await liveCpuBytes();
  const dir = fs.mkdtempSync(path.join(rootDir, "options-"));
  const controller = new AbortController();
  const options: Record<string, unknown> = { ...c.options };
  if (c.onProgress === "function") options.onProgress = () => undefined;
  if (c.onProgress === "throws")
    options.onProgress = () => {
      throw new Error("onProgress threw this on purpose");
    };
  if (c.onProgress === "odd") options.onProgress = 5;
  if (c.signal === "aborted") options.signal = AbortSignal.abort();
  if (c.signal === "fake") options.signal = { aborted: false };
  if (c.signal === "abortMidway") {
    options.signal = controller.signal;
    options.onProgress = () => controller.abort(new Error("aborted while loading by the fuzz case"));
  }
  const what = `loadModel options ${jsonText(c.options).slice(0, 200)}, onProgress ${c.onProgress}, signal ${c.signal}`;
  try {
    writeBaseModel(dir, 1);
    const invalid = invalidLoadOption(c);
    const loaded = await attempt(() => loadModel(dir, options as never));
    if (!loaded.ok) {
      expectUsefulError(loaded.error, what);
      return;
    }
    try {
      if (invalid) fail(`${what}: loaded, but ${invalid} is invalid and must be refused with an Error`);
      if (c.onProgress === "throws" || c.signal === "abortMidway")
        fail(`${what}: loaded although onProgress threw or the signal was aborted during the load`);
      const generated = await attempt(() => generateTokens(loaded.value, "Hello there"));
      if (!generated.ok) {
        expectUsefulError(generated.error, `${what}, generating`);
        return;
      }
      const exact =
        (c.options.dtype == null || c.options.dtype === "f32") && (c.options.computeDType == null || c.options.computeDType === "f32");
      if (exact && generated.value.join() !== base.join()) fail(`${what}: generated [${generated.value}], with default options [${base}]`);
    } finally {
      await loaded.value.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await expectMemoryBack(before, what);
  }
}

/** Token ids of `prompt` under the unmutated tokenizer in `dir`, or undefined if it cannot encode it. */
async function baseTokenIds(dir: string, prompt: string | Array<{ role: unknown; content: unknown }>): Promise<number[] | undefined> {
  const r = await attempt(() => {
    const tokenizer = Tokenizer.fromDirectory(dir);
    return typeof prompt === "string"
      ? tokenizer.encode(prompt)
      : tokenizer.encode(tokenizer.applyChatTemplate(prompt as never), { addSpecialTokens: false });
  });
  return r.ok ? r.value : undefined;
}

/** What a loaded config must satisfy whatever config.json said. */
function expectSaneConfig(model: Model, what: string): void {
  const c = model.config;
  for (const key of [
    "vocabSize",
    "hiddenSize",
    "intermediateSize",
    "layers",
    "heads",
    "kvHeads",
    "headDim",
    "maxPositionEmbeddings",
  ] as const)
    if (!Number.isSafeInteger(c[key]) || c[key] < 1) fail(`${what}: loaded with config.${key} = ${c[key]}`);
  for (const key of ["rmsNormEps", "ropeTheta"] as const)
    if (!Number.isFinite(c[key]) || !(c[key] > 0)) fail(`${what}: loaded with config.${key} = ${c[key]}`);
  if (c.ropeScaling.type !== "default")
    for (const [k, v] of Object.entries(c.ropeScaling))
      if (k !== "type" && !(Number.isFinite(v) && (v as number) > 0)) fail(`${what}: loaded with rope scaling ${k} = ${v}`);
  if (!Array.isArray(c.eosTokenIds) || c.eosTokenIds.some((id) => !Number.isInteger(id) || id < 0 || id >= c.vocabSize))
    fail(`${what}: loaded with eos token ids ${JSON.stringify(c.eosTokenIds)} (vocabulary 0..${c.vocabSize - 1}): EOS would never match`);
  if (c.bosTokenId !== null && (!Number.isInteger(c.bosTokenId) || c.bosTokenId < 0 || c.bosTokenId >= c.vocabSize))
    fail(`${what}: loaded with bos token id ${c.bosTokenId}`);
  if (c.slidingWindow !== null && (!Number.isSafeInteger(c.slidingWindow) || c.slidingWindow < 1))
    fail(`${what}: loaded with sliding window ${c.slidingWindow}`);
}

export async function teardown(): Promise<void> {
  if (root) fs.rmSync(root, { recursive: true, force: true });
}
