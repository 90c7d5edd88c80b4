// A plain float64 forward pass of a Llama/Qwen2-style checkpoint, written from the model's
// definition for the hybrid tests: each layer's attention mask is a function the test chooses,
// and every attention probability is there to compute lazy ratios from.
import * as path from "node:path";
import { type ModelConfig, readConfig } from "../../lib/checkpoint/config";
import { Checkpoint } from "../../lib/checkpoint/weights";
import { ropeInverseFrequencies } from "../../lib/model/rope";
import { math } from "./reference";

type Mat = Float64Array;

export interface ReferenceWeights {
  config: ModelConfig;
  get(name: string): Mat;
  has(name: string): boolean;
}

export function loadReferenceWeights(dir: string): ReferenceWeights {
  const config = readConfig(dir);
  const checkpoint = new Checkpoint(dir);
  const cache = new Map<string, Mat>();
  try {
    for (const file of checkpoint.files)
      for (const name of file.entries.keys()) {
        const t = file.read(name);
        cache.set(name, Float64Array.from(t.toFloat32Array()));
        t.dispose();
      }
  } finally {
    checkpoint.close();
  }
  return { config, get: (n) => cache.get(n)!, has: (n) => cache.has(n) };
}

/** y[r, j] = Σ_i x[r, i] · w[j, i] (+ b[j]) */
function linear(x: Mat, rows: number, w: Mat, n: number, k: number, b?: Mat): Mat {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < n; j++) {
      let s = b ? b[j] : 0;
      for (let i = 0; i < k; i++) s += x[r * k + i] * w[j * k + i];
      y[r * n + j] = s;
    }
  return y;
}

function rmsNorm(x: Mat, rows: number, dim: number, w: Mat, eps: number): Mat {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let ms = 0;
    for (let i = 0; i < dim; i++) ms += x[r * dim + i] ** 2;
    const inv = 1 / math.sqrt(ms / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}

function rope(x: Mat, tokens: number, heads: number, d: number, invFreq: Float32Array) {
  for (let t = 0; t < tokens; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < d / 2; i++) {
        const angle = math.fround(t * invFreq[i]);
        const base = (t * heads + h) * d;
        const a = x[base + i],
          b = x[base + i + d / 2];
        x[base + i] = a * math.cos(angle) - b * math.sin(angle);
        x[base + i + d / 2] = b * math.cos(angle) + a * math.sin(angle);
      }
}

/** visible(layer, queryPosition, keyPosition) */
export type MaskFn = (layer: number, q: number, k: number) => boolean;

export interface ForwardResult {
  /** [tokens, vocab] */
  logits: Float64Array;
  /** probs[layer][(q * heads + h) * tokens + k] */
  probs: Float64Array[];
}

export function referenceForward(w: ReferenceWeights, ids: number[], mask: MaskFn): ForwardResult {
  const c = w.config,
    N = ids.length,
    H = c.hiddenSize,
    d = c.headDim,
    hq = c.heads,
    hkv = c.kvHeads;
  const invFreq = ropeInverseFrequencies(c);
  const embed = w.get("model.embed_tokens.weight");
  const h = new Float64Array(N * H);
  ids.forEach((id, t) => h.set(embed.subarray(id * H, (id + 1) * H), t * H));
  const probs: Float64Array[] = [];
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (n: string) => (w.has(`${p}self_attn.${n}.bias`) ? w.get(`${p}self_attn.${n}.bias`) : undefined);
    const x = rmsNorm(h, N, H, w.get(`${p}input_layernorm.weight`), c.rmsNormEps);
    const q = linear(x, N, w.get(`${p}self_attn.q_proj.weight`), hq * d, H, bias("q_proj"));
    const k = linear(x, N, w.get(`${p}self_attn.k_proj.weight`), hkv * d, H, bias("k_proj"));
    const v = linear(x, N, w.get(`${p}self_attn.v_proj.weight`), hkv * d, H, bias("v_proj"));
    rope(q, N, hq, d, invFreq);
    rope(k, N, hkv, d, invFreq);
    const attn = new Float64Array(N * hq * d);
    const P = new Float64Array(N * hq * N);
    for (let t = 0; t < N; t++)
      for (let hh = 0; hh < hq; hh++) {
        const kv = math.floor(hh / (hq / hkv));
        const s = new Float64Array(N).fill(-Infinity);
        let max = -Infinity;
        for (let j = 0; j <= t; j++) {
          if (!mask(l, t, j)) continue;
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[(t * hq + hh) * d + i] * k[(j * hkv + kv) * d + i];
          s[j] = dot / math.sqrt(d);
          max = math.max(max, s[j]);
        }
        let sum = 0;
        for (let j = 0; j < N; j++) if (s[j] > -Infinity) sum += math.exp(s[j] - max);
        for (let j = 0; j < N; j++) {
          if (s[j] === -Infinity) continue;
          const pr = math.exp(s[j] - max) / sum;
          P[(t * hq + hh) * N + j] = pr;
          for (let i = 0; i < d; i++) attn[(t * hq + hh) * d + i] += pr * v[(j * hkv + kv) * d + i];
        }
      }
    probs.push(P);
    const o = linear(attn, N, w.get(`${p}self_attn.o_proj.weight`), H, hq * d);
    for (let i = 0; i < h.length; i++) h[i] += o[i];
    const x2 = rmsNorm(h, N, H, w.get(`${p}post_attention_layernorm.weight`), c.rmsNormEps);
    const I = c.intermediateSize;
    const gate = linear(x2, N, w.get(`${p}mlp.gate_proj.weight`), I, H);
    const up = linear(x2, N, w.get(`${p}mlp.up_proj.weight`), I, H);
    for (let i = 0; i < gate.length; i++) gate[i] = (gate[i] / (1 + math.exp(-gate[i]))) * up[i];
    const down = linear(gate, N, w.get(`${p}mlp.down_proj.weight`), H, I);
    for (let i = 0; i < h.length; i++) h[i] += down[i];
  }
  const final = rmsNorm(h, N, H, w.get("model.norm.weight"), c.rmsNormEps);
  const head = w.has("lm_head.weight") ? w.get("lm_head.weight") : embed;
  return { logits: linear(final, N, head, c.vocabSize, H), probs };
}

/**
 * Lazy ratio of DESIGN.md section 2 from explicit probabilities: for the sequence's first `length`
 * positions, the mean over heads and the last `lastQueries` queries of their mass on
 * {j < sink} ∪ {length − window <= j < length}.
 */
export function referenceRatio(
  probs: Float64Array,
  tokens: number,
  heads: number,
  length: number,
  spec: { sink: number; window: number; lastQueries: number },
): number {
  let total = 0,
    count = 0;
  for (let qpos = math.max(0, length - spec.lastQueries); qpos < length; qpos++)
    for (let h = 0; h < heads; h++) {
      let mass = 0;
      for (let j = 0; j <= qpos; j++) if (j < spec.sink || j >= length - spec.window) mass += probs[(qpos * heads + h) * tokens + j];
      total += mass;
      count++;
    }
  return total / count;
}

export const fixtureDir = (name: string) => path.join(__dirname, "..", "fixtures", "models", name);
