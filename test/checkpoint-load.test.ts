// loadModel against checkpoints that disagree with transformers' reading of them: Llama's o_proj
// bias, tensors config.json leaves unused, dtypes mixed inside a stacked projection, aborts at the
// very end of a load, a config.json without architectures, and shards that are not regular files.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModel, memoryUsage } from "../lib";
import { Tensor } from "../lib/runtime/tensor";
import { runChild } from "./helpers/child";
import { fixtureRoot } from "./helpers/fixtures";
import { collectGarbage } from "./helpers/gc";
import { copyFixture, editJson, fixtureTensors, fixtureWithTensors, type StoredTensor, storedF32 } from "./helpers/model-dir";
import { Random } from "./helpers/reference";

const rng = new Random();
const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh copy of a fixture model, removed after the tests. */
function copy(model: string): string {
  const dir = copyFixture(model);
  made.push(dir);
  return dir;
}

/** A copy of fixture `model` whose weights are `tensors`, removed after the tests. */
function modelWith(model: string, tensors: Map<string, StoredTensor>): string {
  const dir = fixtureWithTensors(model, tensors);
  made.push(dir);
  return dir;
}

/** bf16 bit patterns widened to the f32 values they stand for (exact). */
function widenBf16(t: StoredTensor): Float32Array {
  const bits = new Uint16Array(t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.length));
  return new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
}

/** Random normals rounded to bf16, so bf16 and f32 hold them alike. */
function bf16Normals(n: number, scale = 1): Float32Array {
  const t = Tensor.from(rng.normals(n, scale), [n], { dtype: "bf16" });
  const values = t.toFloat32Array();
  t.dispose();
  return values;
}

async function allLogits(dir: string, ids: number[]): Promise<Float32Array> {
  const model = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20, tokenizer: false });
  const seq = model.decoder.createSequence();
  try {
    return model.decoder.prefill(seq, ids, { allLogits: true });
  } finally {
    seq.dispose();
    await model.dispose();
  }
}

const llamaConfig = () => JSON.parse(fs.readFileSync(path.join(fixtureRoot, "llama-tiny", "config.json"), "utf8"));

describe(`seed ${rng.seed}`, () => {
  test("Llama's attention_bias adds o_proj's bias to the residual stream, as transformers' LlamaAttention does", async () => {
    const c = llamaConfig();
    const [hidden, layers, d] = [c.hidden_size, c.num_hidden_layers, c.head_dim];
    const base = new Map([...fixtureTensors("llama-tiny")].map(([name, t]) => [name, storedF32(widenBf16(t), t.shape)]));
    for (let l = 0; l < layers; l++) {
      const p = `model.layers.${l}.self_attn.`;
      base.set(`${p}q_proj.bias`, storedF32(rng.normals(c.num_attention_heads * d, 0.1), [c.num_attention_heads * d]));
      for (const kv of ["k_proj", "v_proj"])
        base.set(`${p}${kv}.bias`, storedF32(rng.normals(c.num_key_value_heads * d, 0.1), [c.num_key_value_heads * d]));
      base.set(`${p}o_proj.bias`, storedF32(rng.normals(hidden, 0.1), [hidden]));
    }
    // With layer 0's o_proj weight zero, its attention adds exactly its bias b to every token's
    // embedding: the same residual stream as an embedding with b added to each row and no bias.
    const o = "model.layers.0.self_attn.o_proj.";
    const b = rng.normals(hidden, 0.5);
    const zeroO = storedF32(new Float32Array(hidden * c.num_attention_heads * d), [hidden, c.num_attention_heads * d]);
    const withBias = new Map(base).set(`${o}weight`, zeroO).set(`${o}bias`, storedF32(b, [hidden]));
    const embed = new Float32Array(base.get("model.embed_tokens.weight")!.bytes.buffer.slice(0));
    for (let i = 0; i < embed.length; i++) embed[i] += b[i % hidden];
    const shifted = new Map(base)
      .set(`${o}weight`, zeroO)
      .set(`${o}bias`, storedF32(new Float32Array(hidden), [hidden]))
      .set("model.embed_tokens.weight", storedF32(embed, [c.vocab_size, hidden]));
    const dirs = [modelWith("llama-tiny", withBias), modelWith("llama-tiny", shifted)];
    for (const dir of dirs) editJson(dir, "config.json", (j) => ({ ...j, attention_bias: true }));
    const ids = Array.from({ length: rng.int(3, 12) }, () => rng.int(0, c.vocab_size - 1));
    const [got, want] = [await allLogits(dirs[0], ids), await allLogits(dirs[1], ids)];
    // Bit for bit: both round embedding + b to f32 once, and run the same weights from there.
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    expect(worst).toBe(0);
    // The bias must be there with attention_bias: transformers' Linear has one.
    base.delete("model.layers.1.self_attn.o_proj.bias");
    const missing = modelWith("llama-tiny", base);
    editJson(missing, "config.json", (j) => ({ ...j, attention_bias: true }));
    await expect(loadModel(missing, { device: "cpu" })).rejects.toThrow(/has no tensor 'model\.layers\.1\.self_attn\.o_proj\.bias'/);
  });

  test("Mistral ignores attention_bias (its projections have none), as transformers' MistralAttention does", async () => {
    const dir = copy("mistral-tiny");
    editJson(dir, "config.json", (j) => ({ ...j, attention_bias: true, mlp_bias: true }));
    const model = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20 });
    expect(model.decoder.weights.layers.every((l) => l.qkvBias === undefined && l.oBias === undefined)).toBe(true);
    await model.dispose();
  });

  test("a checkpoint tensor that config.json leaves unused is an error naming it", async () => {
    const dir = copy("llama-tiny");
    const layers = rng.int(1, llamaConfig().num_hidden_layers - 1);
    editJson(dir, "config.json", (j) => ({ ...j, num_hidden_layers: layers }));
    await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(
      new RegExp(
        `\\d+ tensor\\(s\\) of the checkpoint have no place in the LlamaForCausalLM that config.json describes \\('model\\.layers\\.${layers}\\.`,
      ),
    );

    const dtype = ["U32", "F8_E4M3", "F32", "I8"][rng.int(0, 3)];
    const bytes = Buffer.from(Uint8Array.from({ length: 4 * (dtype === "U32" || dtype === "F32" ? 4 : 1) }, () => rng.int(1, 255)));
    const extra = new Map(fixtureTensors("llama-tiny")).set("model.layers.0.self_attn.k_scale", { dtype, shape: [4], bytes });
    await expect(loadModel(modelWith("llama-tiny", extra), { device: "cpu" })).rejects.toThrow(
      /1 tensor\(s\) of the checkpoint have no place in the LlamaForCausalLM that config\.json describes \('model\.layers\.0\.self_attn\.k_scale'\): config\.json does not match these weights/,
    );
  });

  test("rotary inverse frequencies and a tied lm_head.weight are left unused, as transformers leaves them", async () => {
    const c = llamaConfig();
    const withFreq = new Map(fixtureTensors("llama-tiny")).set(
      `model.layers.${rng.int(0, c.num_hidden_layers - 1)}.self_attn.rotary_emb.inv_freq`,
      storedF32(rng.floats(c.head_dim / 2), [c.head_dim / 2]),
    );
    await (await loadModel(modelWith("llama-tiny", withFreq), { device: "cpu", kvCacheBytes: 2 ** 20 })).dispose();

    const qwen = fixtureTensors("qwen2-tiny");
    const embed = qwen.get("model.embed_tokens.weight")!;
    const tied = new Map(qwen).set("lm_head.weight", storedF32(rng.normals(embed.bytes.length / 4), embed.shape));
    const model = await loadModel(modelWith("qwen2-tiny", tied), { device: "cpu", kvCacheBytes: 2 ** 20 });
    expect(model.decoder.weights.lmHead).toBe(model.decoder.weights.embed);
    await model.dispose();
  });

  test.each(["f32", "bf16"] as const)(
    "a stacked q|k|v whose k_proj is F32 among BF16 loads with dtype %s, each part converted",
    async (dtype) => {
      const c = llamaConfig();
      const tensors = fixtureTensors("llama-tiny");
      const [qName, kName, vName] = ["q", "k", "v"].map((x) => `model.layers.0.self_attn.${x}_proj.weight`);
      const k = bf16Normals(c.num_key_value_heads * c.head_dim * c.hidden_size, 0.2);
      tensors.set(kName, storedF32(k, tensors.get(kName)!.shape));
      const model = await loadModel(modelWith("llama-tiny", tensors), { device: "cpu", dtype, kvCacheBytes: 2 ** 20 });
      try {
        const qkv = model.decoder.weights.layers[0].qkv;
        expect(qkv.dtype).toBe(dtype);
        const want = [...widenBf16(tensors.get(qName)!), ...k, ...widenBf16(tensors.get(vName)!)];
        expect(Array.from(qkv.toFloat32Array())).toEqual(want);
      } finally {
        await model.dispose();
      }
    },
  );

  test("an abort during the last tensor's onProgress rejects the load and frees everything it loaded", async () => {
    const dir = path.join(fixtureRoot, "llama-tiny");
    let total = 0;
    await (await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20, onProgress: () => total++ })).dispose();
    await collectGarbage();
    const before = memoryUsage().cpu;
    const controller = new AbortController();
    let calls = 0;
    const reason = new Error(`aborted at progress call ${total}`);
    const load = loadModel(dir, {
      device: "cpu",
      kvCacheBytes: 2 ** 20,
      signal: controller.signal,
      onProgress: () => {
        if (++calls === total) controller.abort(reason);
      },
    });
    await expect(load).rejects.toBe(reason);
    await collectGarbage();
    expect(memoryUsage().cpu).toBe(before);
  });

  test("an already aborted signal rejects before anything is read", async () => {
    const reason = new Error("aborted before loadModel");
    await expect(loadModel("/nonexistent/model", { device: "cpu", signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  test.each(["llama", "mistral", "qwen2"])(
    "a config.json without architectures loads by its model_type %s, as transformers' Auto classes do",
    async (type) => {
      const fixture = `${type}-tiny`;
      const dir = copy(fixture);
      editJson(dir, "config.json", ({ architectures: _, ...j }) => j);
      const model = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20 });
      expect(model.config.architecture).toBe(
        JSON.parse(fs.readFileSync(path.join(fixtureRoot, fixture, "config.json"), "utf8")).architectures[0],
      );
      await model.dispose();
    },
  );

  test.each([
    ["a shard", "llama-tiny", "model-00002-of-00004.safetensors"],
    ["model.safetensors", "qwen2-tiny", "model.safetensors"],
  ])("%s that is a FIFO is refused at once, not waited on", (_, fixture, name) => {
    const dir = copy(fixture);
    fs.rmSync(path.join(dir, name));
    execFileSync("mkfifo", [path.join(dir, name)]);
    // In a child: an open that waits for a writer would block its thread for good.
    const r = runChild(
      `require(process.env.LIGHTTRANSFER_ROOT + "/lib").loadModel(${JSON.stringify(dir)}, { device: "cpu" }).then(
        () => console.log("RESULT loaded"),
        (err) => console.log("RESULT " + err.message),
      );`,
      { timeoutMs: 30_000 },
    );
    expect({ signal: r.signal, stdout: r.stdout.trim() }).toEqual({
      signal: null,
      stdout: `RESULT ${path.join(dir, name)}: is not a regular file`,
    });
  });
});
