// Finds a checkpoint's tensors (one model.safetensors, or shards listed in
// model.safetensors.index.json), checks every tensor the architecture needs against the config,
// and loads them onto the device: the gate and up projections stacked into one matrix so the
// MLP's first GEMM is a single call.
import * as fs from "node:fs";
import * as path from "node:path";
import { DeviceName, DType, Tensor } from "../tensor";
import { ModelConfig } from "./config";
import { SafetensorsFile } from "./safetensors";

export interface LayerWeights {
  inputNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  qBias?: Tensor;
  kBias?: Tensor;
  vBias?: Tensor;
  o: Tensor;
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

/** Opens every shard of a checkpoint and maps tensor names to their file. */
export class Checkpoint {
  readonly files: SafetensorsFile[] = [];
  private readonly byName = new Map<string, SafetensorsFile>();

  constructor(readonly dir: string) {
    const index = path.join(dir, "model.safetensors.index.json");
    const single = path.join(dir, "model.safetensors");
    try {
      if (fs.existsSync(index)) {
        let weightMap: Record<string, string>;
        try {
          weightMap = JSON.parse(fs.readFileSync(index, "utf8")).weight_map;
        } catch (err) {
          throw new Error(`${index}: cannot be read as JSON (${(err as Error).message})`);
        }
        if (typeof weightMap !== "object" || weightMap === null) throw new Error(`${index}: has no 'weight_map' object`);
        const opened = new Map<string, SafetensorsFile>();
        for (const [name, file] of Object.entries(weightMap)) {
          if (!opened.has(file)) {
            const shard = SafetensorsFile.open(path.join(dir, file));
            opened.set(file, shard);
            this.files.push(shard);
          }
          const shard = opened.get(file)!;
          if (!shard.entries.has(name)) throw new Error(`${index}: lists '${name}' in ${file}, but that file has no such tensor`);
          this.byName.set(name, shard);
        }
      } else if (fs.existsSync(single)) {
        const file = SafetensorsFile.open(single);
        this.files.push(file);
        for (const name of file.entries.keys()) this.byName.set(name, file);
      } else {
        throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json found (only safetensors checkpoints are supported)`);
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  file(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) throw new Error(`${this.dir}: the checkpoint has no tensor '${name}'`);
    return f;
  }

  /** Checks that `name` exists with exactly `shape`. */
  expect(name: string, shape: number[]): void {
    const entry = this.file(name).get(name);
    if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i]))
      throw new Error(
        `${this.file(name).path}: tensor '${name}' has shape [${entry.shape.join(", ")}] but config.json implies [${shape.join(", ")}]`,
      );
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

interface Planned {
  /** Source tensors stacked in order along the first dimension. */
  sources: string[];
  shape: number[];
}

function plan(config: ModelConfig): { embed: Planned; norm: Planned; lmHead?: Planned; layers: Record<keyof LayerWeights, Planned | undefined>[] } {
  const { hiddenSize: h, heads, kvHeads, headDim: d, intermediateSize: inter, vocabSize: vocab } = config;
  const one = (name: string, shape: number[]): Planned => ({ sources: [name], shape });
  const layers = Array.from({ length: config.layers }, (_, i) => {
    const p = `model.layers.${i}.`;
    const bias = (name: string, n: number) => (config.attentionBias ? one(`${p}self_attn.${name}.bias`, [n]) : undefined);
    return {
      inputNorm: one(`${p}input_layernorm.weight`, [h]),
      q: one(`${p}self_attn.q_proj.weight`, [heads * d, h]),
      k: one(`${p}self_attn.k_proj.weight`, [kvHeads * d, h]),
      v: one(`${p}self_attn.v_proj.weight`, [kvHeads * d, h]),
      qBias: bias("q_proj", heads * d),
      kBias: bias("k_proj", kvHeads * d),
      vBias: bias("v_proj", kvHeads * d),
      o: one(`${p}self_attn.o_proj.weight`, [h, heads * d]),
      postNorm: one(`${p}post_attention_layernorm.weight`, [h]),
      gateUp: { sources: [`${p}mlp.gate_proj.weight`, `${p}mlp.up_proj.weight`], shape: [2 * inter, h] },
      down: one(`${p}mlp.down_proj.weight`, [h, inter]),
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
  const all: Planned[] = [layout.embed, layout.norm, ...(layout.lmHead ? [layout.lmHead] : []),
    ...layout.layers.flatMap((l) => Object.values(l).filter((p): p is Planned => p !== undefined))];
  // Check every tensor before reading any, so a mismatched checkpoint fails fast.
  for (const planned of all) {
    const rows = planned.shape[0] / planned.sources.length;
    for (const name of planned.sources) checkpoint.expect(name, planned.sources.length > 1 ? [rows, ...planned.shape.slice(1)] : planned.shape);
  }
  const sourceDTypes = new Set(all.flatMap((p) => p.sources.map((s) => checkpoint.file(s).get(s).dtype)));
  const totalBytes = all.reduce((sum, p) => sum + p.sources.reduce((s, n) => s + sizeOf(checkpoint, n), 0), 0);
  let loadedBytes = 0;
  const loaded: Tensor[] = [];

  const load = async (planned: Planned): Promise<Tensor> => {
    options.signal?.throwIfAborted();
    const first = checkpoint.file(planned.sources[0]).get(planned.sources[0]);
    const fileDType = first.dtype.toLowerCase() as DType;
    const staging = Tensor.empty(planned.shape, fileDType, "cpu");
    try {
      let offset = 0;
      for (const name of planned.sources) {
        const file = checkpoint.file(name);
        if (file.get(name).dtype !== first.dtype)
          throw new Error(`${file.path}: tensor '${name}' is ${file.get(name).dtype} but '${planned.sources[0]}' is ${first.dtype}; stacked tensors must share a dtype`);
        await file.readAsync(name, staging, offset);
        offset += file.get(name).shape.reduce((a, b) => a * b, 1);
        loadedBytes += sizeOf(checkpoint, name);
      }
      const wanted = options.dtype ?? fileDType;
      let result = staging;
      if (wanted !== fileDType) {
        result = Tensor.from(staging.toFloat32Array(), planned.shape, { dtype: wanted });
        staging.dispose();
      }
      if (options.device !== "cpu") {
        const onDevice = result.to(options.device);
        result.dispose();
        result = onDevice;
      }
      loaded.push(result);
      options.onProgress?.({ loadedBytes, totalBytes, tensor: planned.sources.join(" + ") });
      return result;
    } catch (err) {
      if (!staging.disposed) staging.dispose();
      throw err;
    }
  };

  try {
    if (sourceDTypes.size > 1 && !options.dtype)
      throw new Error(`${checkpoint.dir}: weights mix dtypes (${[...sourceDTypes].join(", ")}); pass a dtype to convert them to one`);
    const embed = await load(layout.embed);
    const norm = await load(layout.norm);
    const lmHead = layout.lmHead ? await load(layout.lmHead) : embed;
    const layers: LayerWeights[] = [];
    for (const l of layout.layers) {
      const w: Partial<LayerWeights> = {};
      for (const [key, planned] of Object.entries(l) as [keyof LayerWeights, Planned | undefined][]) if (planned) w[key] = await load(planned);
      layers.push(w as LayerWeights);
    }
    return { embed, norm, lmHead, layers };
  } catch (err) {
    for (const t of loaded) t.dispose();
    throw err;
  }
}

function sizeOf(checkpoint: Checkpoint, name: string): number {
  const e = checkpoint.file(name).get(name);
  return e.end - e.begin;
}

/** Every tensor of a ModelWeights, once (a tied lm_head is the embedding). */
export function weightTensors(w: ModelWeights): Tensor[] {
  const set = new Set<Tensor>([w.embed, w.norm, w.lmHead]);
  for (const l of w.layers) for (const t of Object.values(l)) if (t) set.add(t);
  return [...set];
}
