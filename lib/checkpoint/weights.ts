// Finds a checkpoint's tensors (one model.safetensors, or shards listed in
// model.safetensors.index.json), checks every tensor the architecture needs against the config
// (and that the checkpoint holds no other), and loads them onto the device: the gate and up
// projections stacked into one matrix so the MLP's first GEMM is a single call, and likewise q, k
// and v (with their biases) so a decode layer projects its attention input with one GEMM.
import * as fs from "node:fs";
import * as path from "node:path";
import { type DeviceName, type DType, Tensor } from "../runtime/tensor";
import type { ModelConfig } from "./config";
import { type FileDType, SafetensorsError, SafetensorsFile } from "./safetensors";

export interface LayerWeights {
  inputNorm: Tensor;
  /** [(heads + 2 · kvHeads) · headDim, hidden]: q rows, then k rows, then v rows. */
  qkv: Tensor;
  qkvBias?: Tensor;
  o: Tensor;
  oBias?: Tensor;
  postNorm: Tensor;
  /** [2 · intermediate, hidden]: gate rows then up rows. */
  gateUp: Tensor;
  down: Tensor;
}

export interface ModelWeights {
  embed: Tensor;
  layers: LayerWeights[];
  norm: Tensor;
  /** The output projection; the embedding itself when the checkpoint ties them. */
  lmHead: Tensor;
}

/** Weights read so far, given to loadModel's onProgress after each tensor. */
export interface LoadProgress {
  loadedBytes: number;
  totalBytes: number;
  tensor: string;
}

export interface LoadWeightsOptions {
  device: DeviceName;
  /** Weight dtype on the device; undefined keeps what the file stores. */
  dtype?: DType;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

/**
 * Opens every shard of a checkpoint and maps tensor names to their file. A shard index must
 * describe its shards exactly: every entry names a file inside the model directory that holds the
 * tensor, every tensor of those files is listed, and no tensor is in two files.
 * @example
 * const checkpoint = new Checkpoint("./Llama-3.1-8B-Instruct");
 * checkpoint.expect("model.norm.weight", [4096]);
 * checkpoint.close();
 */
export class Checkpoint {
  readonly files: SafetensorsFile[] = [];
  private readonly byName = new Map<string, SafetensorsFile>();

  constructor(readonly dir: string) {
    const index = path.join(dir, "model.safetensors.index.json");
    const single = path.join(dir, "model.safetensors");
    try {
      if (fs.existsSync(index)) this.openShards(index);
      else if (fs.existsSync(single)) {
        const file = SafetensorsFile.open(single);
        this.files.push(file);
        for (const name of file.entries.keys()) this.byName.set(name, file);
      } else {
        throw new SafetensorsError(
          dir,
          "no model.safetensors or model.safetensors.index.json found (only safetensors checkpoints are supported)",
        );
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private openShards(index: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(index, "utf8"));
    } catch (err) {
      throw new SafetensorsError(index, `cannot be read as JSON (${(err as Error).message})`);
    }
    const weightMap = (parsed as { weight_map?: unknown } | null)?.weight_map;
    if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap))
      throw new SafetensorsError(index, "has no 'weight_map' object");
    const opened = new Map<string, SafetensorsFile>();
    for (const [name, file] of Object.entries(weightMap)) {
      if (typeof file !== "string" || file === "" || file === "." || file === ".." || path.basename(file) !== file)
        throw new SafetensorsError(
          index,
          `weight_map entry '${name}' names ${JSON.stringify(file)}, which is not a file name inside the model directory`,
        );
      let shard = opened.get(file);
      if (!shard) {
        shard = SafetensorsFile.open(path.join(this.dir, file));
        opened.set(file, shard);
        this.files.push(shard);
      }
      if (!shard.entries.has(name)) throw new SafetensorsError(index, `lists '${name}' in ${file}, but that file has no such tensor`);
      this.byName.set(name, shard);
    }
    const holder = new Map<string, string>();
    for (const [file, shard] of opened)
      for (const name of shard.entries.keys()) {
        const other = holder.get(name);
        if (other !== undefined)
          throw new SafetensorsError(index, `tensor '${name}' is in both ${other} and ${file}: the shards must not overlap`);
        holder.set(name, file);
      }
    for (const [name, file] of holder)
      if (!this.byName.has(name)) throw new SafetensorsError(index, `${file} holds '${name}', which the index does not list`);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Every tensor name of the checkpoint. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  file(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) throw new SafetensorsError(this.dir, `the checkpoint has no tensor '${name}'`);
    return f;
  }

  /** Checks that `name` exists as a floating-point tensor of exactly `shape`. */
  expect(name: string, shape: number[]): void {
    const file = this.file(name);
    const entry = file.get(name);
    if (!weightDTypes.includes(entry.dtype))
      throw new SafetensorsError(file.path, `tensor '${name}' is ${entry.dtype}; weights must be ${weightDTypes.join(", ")}`);
    if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i]))
      throw new SafetensorsError(
        file.path,
        `tensor '${name}' has shape [${entry.shape.join(", ")}] but config.json implies [${shape.join(", ")}]`,
      );
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

const weightDTypes: readonly FileDType[] = ["F32", "F16", "BF16"];

interface Planned {
  /** Source tensors stacked in order along the first dimension, each with its own shape. */
  sources: Array<{ name: string; shape: number[] }>;
  shape: number[];
}

function plan(config: ModelConfig): {
  embed: Planned;
  norm: Planned;
  lmHead?: Planned;
  layers: Record<keyof LayerWeights, Planned | undefined>[];
} {
  const { hiddenSize: h, heads, kvHeads, headDim: d, intermediateSize: inter, vocabSize: vocab } = config;
  const one = (name: string, shape: number[]): Planned => ({ sources: [{ name, shape }], shape });
  const stack = (parts: Array<[string, number[]]>): Planned => ({
    sources: parts.map(([name, shape]) => ({ name, shape })),
    shape: [parts.reduce((rows, [, shape]) => rows + shape[0], 0), ...parts[0][1].slice(1)],
  });
  const layers = Array.from({ length: config.layers }, (_, i) => {
    const p = `model.layers.${i}.self_attn.`;
    const m = `model.layers.${i}.mlp.`;
    const projections = (suffix: string, cols: number[]) =>
      stack([
        [`${p}q_proj.${suffix}`, [heads * d, ...cols]],
        [`${p}k_proj.${suffix}`, [kvHeads * d, ...cols]],
        [`${p}v_proj.${suffix}`, [kvHeads * d, ...cols]],
      ]);
    return {
      inputNorm: one(`model.layers.${i}.input_layernorm.weight`, [h]),
      qkv: projections("weight", [h]),
      qkvBias: config.attentionBias ? projections("bias", []) : undefined,
      o: one(`${p}o_proj.weight`, [h, heads * d]),
      oBias: config.outputBias ? one(`${p}o_proj.bias`, [h]) : undefined,
      postNorm: one(`model.layers.${i}.post_attention_layernorm.weight`, [h]),
      gateUp: stack([
        [`${m}gate_proj.weight`, [inter, h]],
        [`${m}up_proj.weight`, [inter, h]],
      ]),
      down: one(`${m}down_proj.weight`, [h, inter]),
    };
  });
  return {
    embed: one("model.embed_tokens.weight", [vocab, h]),
    norm: one("model.norm.weight", [h]),
    lmHead: config.tieWordEmbeddings ? undefined : one("lm_head.weight", [vocab, h]),
    layers,
  };
}

/**
 * Loads and checks every weight the decoder needs. On failure or abort, everything loaded so far
 * is freed before the error propagates.
 */
export async function loadWeights(checkpoint: Checkpoint, config: ModelConfig, options: LoadWeightsOptions): Promise<ModelWeights> {
  const layout = plan(config);
  const all: Planned[] = [
    layout.embed,
    layout.norm,
    ...(layout.lmHead ? [layout.lmHead] : []),
    ...layout.layers.flatMap((l) => Object.values(l).filter((p): p is Planned => p !== undefined)),
  ];
  // Check every tensor before reading any, so a mismatched checkpoint fails fast.
  for (const planned of all) for (const { name, shape } of planned.sources) checkpoint.expect(name, shape);
  checkAllUsed(checkpoint, config, all);
  const sourceDTypes = new Set(all.flatMap((p) => p.sources.map((s) => checkpoint.file(s.name).get(s.name).dtype)));
  const totalBytes = all.reduce((sum, p) => sum + p.sources.reduce((s, n) => s + sizeOf(checkpoint, n.name), 0), 0);
  let loadedBytes = 0;
  const loaded: Tensor[] = [];

  const load = async (planned: Planned): Promise<Tensor> => {
    options.signal?.throwIfAborted();
    const sources = planned.sources.map(({ name }) => ({ name, file: checkpoint.file(name) }));
    const dtypes = sources.map(({ name, file }) => file.get(name).dtype.toLowerCase() as DType);
    const wanted = options.dtype ?? dtypes[0];
    let result: Tensor;
    let offset = 0;
    const advance = (name: string, file: SafetensorsFile) => {
      offset += file.get(name).shape.reduce((a, b) => a * b, 1);
      loadedBytes += sizeOf(checkpoint, name);
    };
    if (dtypes.every((d) => d === wanted)) {
      // The file's bytes go straight into the tensor the model keeps, on any device (a device
      // tensor through pinned buffers).
      result = Tensor.empty(planned.shape, wanted, options.device);
      try {
        for (const { name, file } of sources) {
          await file.readAsync(name, result, offset);
          advance(name, file);
        }
      } catch (err) {
        result.dispose();
        throw err;
      }
    } else {
      // A conversion goes through f32 on the CPU, each source from its own dtype, so a stacked
      // q|k|v or gate|up may mix them.
      const values = new Float32Array(planned.shape.reduce((a, b) => a * b, 1));
      for (const { name, file } of sources) {
        const part = await file.readAsync(name);
        try {
          values.set(part.toFloat32Array(), offset);
        } finally {
          part.dispose();
        }
        advance(name, file);
      }
      result = Tensor.from(values, planned.shape, { dtype: wanted, device: options.device });
    }
    loaded.push(result);
    options.onProgress?.({ loadedBytes, totalBytes, tensor: planned.sources.map((src) => src.name).join(" + ") });
    return result;
  };

  try {
    if (sourceDTypes.size > 1 && !options.dtype)
      throw new SafetensorsError(
        checkpoint.dir,
        `weights mix dtypes (${[...sourceDTypes].join(", ")}); pass a dtype (loadModel's dtype option, the CLI's --dtype) to convert them to one`,
      );
    const embed = await load(layout.embed);
    const norm = await load(layout.norm);
    const lmHead = layout.lmHead ? await load(layout.lmHead) : embed;
    const layers: LayerWeights[] = [];
    for (const l of layout.layers) {
      const w: Partial<LayerWeights> = {};
      for (const [key, planned] of Object.entries(l) as [keyof LayerWeights, Planned | undefined][])
        if (planned) w[key] = await load(planned);
      layers.push(w as LayerWeights);
    }
    return { embed, norm, lmHead, layers };
  } catch (err) {
    for (const t of loaded) t.dispose();
    throw err;
  }
}

/**
 * A checkpoint tensor that nothing planned reads means config.json describes another model than
 * the weights (num_hidden_layers 4 on an 8-layer checkpoint would run half of it), so it is an
 * error, except for what transformers also leaves unread: the rotary inverse frequencies some
 * exporters save, and lm_head.weight when the embeddings are tied.
 */
function checkAllUsed(checkpoint: Checkpoint, config: ModelConfig, all: Planned[]): void {
  const used = new Set(all.flatMap((p) => p.sources.map((s) => s.name)));
  const unused = checkpoint
    .names()
    .filter((n) => !used.has(n) && !/(^|\.)rotary_emb\.inv_freq$/.test(n) && !(config.tieWordEmbeddings && n === "lm_head.weight"));
  if (unused.length === 0) return;
  const listed = unused
    .slice(0, 3)
    .map((n) => `'${n}'`)
    .join(", ");
  throw new SafetensorsError(
    checkpoint.dir,
    `${unused.length} tensor(s) of the checkpoint have no place in the ${config.architecture} that config.json describes (${listed}${unused.length > 3 ? ", ..." : ""}): ` +
      "config.json does not match these weights (num_hidden_layers, attention_bias, tie_word_embeddings?) or they belong to something this library does not support",
  );
}

function sizeOf(checkpoint: Checkpoint, name: string): number {
  const e = checkpoint.file(name).get(name);
  return e.end - e.begin;
}

/** Every tensor of a ModelWeights once (a tied lm_head is the embedding): what disposing frees. */
export function weightTensors(w: ModelWeights): Tensor[] {
  const set = new Set<Tensor>([w.embed, w.norm, w.lmHead]);
  for (const l of w.layers) for (const t of Object.values(l)) if (t) set.add(t);
  return [...set];
}

/** Bytes of memory the weights hold. */
export function weightBytes(w: ModelWeights): number {
  return weightTensors(w).reduce((sum, t) => sum + t.bytes, 0);
}
