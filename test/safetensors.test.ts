// The safetensors reader: good files read back exactly; every kind of malformed file is a clear
// error naming the file and the problem.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseConfig } from "../lib/checkpoint/config";
import { SafetensorsFile } from "../lib/checkpoint/safetensors";
import { ropeInverseFrequencies } from "../lib/model/rope";
import { Tensor } from "../lib/runtime/tensor";
import { Random } from "./helpers/reference";
import { writeSafetensors } from "./helpers/safetensors-file";

const rng = new Random();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lt-st-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Writes a safetensors file from a header object and a data buffer (both may be wrong on purpose). */
const write = (name: string, header: object | string, data: Buffer, length?: number) =>
  writeSafetensors(path.join(dir, name), header, data, { length });

test("reads F32, BF16 and I32 tensors back exactly, through read and readAsync", async () => {
  const a = rng.normals(6),
    b = Uint16Array.from({ length: 4 }, () => rng.int(0, 0x7f7f)),
    c = Int32Array.from([7, -3]);
  const data = Buffer.concat([Buffer.from(a.buffer), Buffer.from(b.buffer), Buffer.from(c.buffer)]);
  const file = write(
    "good.safetensors",
    {
      __metadata__: { format: "pt" },
      a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
      b: { dtype: "BF16", shape: [4], data_offsets: [24, 32] },
      c: { dtype: "I32", shape: [2], data_offsets: [32, 40] },
    },
    data,
  );
  const st = SafetensorsFile.open(file);
  expect(st.metadata).toEqual({ format: "pt" });
  const ta = st.read("a");
  expect(ta.shape).toEqual([2, 3]);
  expect(Array.from(ta.toArray())).toEqual(Array.from(a));
  const tb = await st.readAsync("b");
  expect(tb.dtype).toBe("bf16");
  expect(Array.from(tb.toArray())).toEqual(Array.from(b));
  expect(Array.from(st.read("c").toArray())).toEqual([7, -3]);
  expect(() => st.read("missing")).toThrow(/has no tensor named 'missing'/);
  // An offset is an element index: a fraction would read at a misaligned byte.
  const stacked = Tensor.empty([4], "i32", "cpu");
  for (const offset of [0.5, -1, Number.NaN])
    expect(() => st.read("c", stacked, offset)).toThrow(/reading tensor 'c': offset must be an element index \(an integer >= 0\)/);
  expect(Array.from(st.read("c", stacked, 2).toArray().slice(2))).toEqual([7, -3]);
  stacked.dispose();
  // close() with a read in flight waits for it: the read still lands, later ones are refused.
  const inFlight = st.readAsync("a");
  st.close();
  expect(Array.from((await inFlight).toArray())).toEqual(Array.from(a));
  await expect(st.readAsync("b")).rejects.toThrow(/is closed/);
  expect(() => st.read("b")).toThrow(/is closed/);
});

// The native read behind readAsync: any byte range of a file into any byte range of a tensor,
// and every bad request a rejected Promise that says what was wrong (test/gpu/read-file.test.ts
// reads into device memory).
describe("a tensor's readFile", () => {
  const bytes = rng.int(3 << 20, 5 << 20);
  const contents = Buffer.from(Uint8Array.from({ length: bytes }, () => rng.int(0, 255)));
  const file = path.join(dir, "bytes.bin");
  fs.writeFileSync(file, contents);

  test("reads the asked range of the file into the asked range of the tensor, and nothing else", async () => {
    const fd = fs.openSync(file, "r");
    try {
      const position = rng.int(0, 4096),
        byteOffset = 2 * rng.int(0, 4096),
        byteLength = bytes - position - rng.int(0, 4096);
      const t = Tensor.empty([Math.ceil((byteOffset + byteLength) / 2) + 8], "bf16");
      t.viewBytes(0, t.bytes).fill(0xa5);
      await t.handle.readFile(fd, position, byteOffset, byteLength);
      const got = Buffer.from(t.viewBytes(0, t.bytes));
      expect(got.subarray(byteOffset, byteOffset + byteLength).equals(contents.subarray(position, position + byteLength))).toBe(true);
      expect(got.subarray(0, byteOffset).every((v) => v === 0xa5)).toBe(true);
      expect(got.subarray(byteOffset + byteLength).every((v) => v === 0xa5)).toBe(true);
      t.dispose();
    } finally {
      fs.closeSync(fd);
    }
  });

  test("a range past the file's end or past the tensor, or a descriptor of no file, is a rejected Promise with the reason", async () => {
    const fd = fs.openSync(file, "r");
    const t = Tensor.empty([1024], "f32");
    try {
      await expect(t.handle.readFile(fd, bytes - 100, 0, 400)).rejects.toThrow(
        new RegExp(`the file ends at byte ${bytes}, 300 bytes before what was asked: it is truncated`),
      );
      await expect(t.handle.readFile(fd, 0, 4000, 400)).rejects.toThrow(/byteLength \(past byteOffset\) must be an integer from 0 to 96/);
      await expect(t.handle.readFile(-1, 0, 0, 4)).rejects.toThrow(/fd must be an integer from 0/);
      await expect(t.handle.readFile(fd, 1.5, 0, 4)).rejects.toThrow(/position must be an integer/);
    } finally {
      fs.closeSync(fd);
    }
    // No process holds this many descriptors, so it names no file.
    await expect(t.handle.readFile(2 ** 30, 0, 0, 4)).rejects.toThrow(/reading the file at byte 0 failed: Bad file descriptor/);
    t.dispose();
    await expect(t.handle.readFile(0, 0, 0, 4)).rejects.toThrow(/cannot read a file into a disposed tensor/);
  });
});

describe(`safetensors dtypes, seed ${rng.seed}`, () => {
  // Every dtype of the format (the safetensors crate's Dtype) and its bits per element.
  const bits: Record<string, number> = {
    BOOL: 8,
    F4: 4,
    F6_E2M3: 6,
    F6_E3M2: 6,
    U8: 8,
    I8: 8,
    F8_E5M2: 8,
    F8_E4M3: 8,
    F8_E8M0: 8,
    F8_E4M3FNUZ: 8,
    F8_E5M2FNUZ: 8,
    I16: 16,
    U16: 16,
    F16: 16,
    BF16: 16,
    I32: 32,
    U32: 32,
    F32: 32,
    C64: 64,
    F64: 64,
    I64: 64,
    U64: 64,
  };
  const readable = ["F32", "F16", "BF16", "I32"];

  test("a file may hold any of them: the readable ones read back exactly, the others are refused when read, by name", () => {
    const header: Record<string, object> = {};
    const data: Buffer[] = [];
    let at = 0;
    for (const [dtype, b] of Object.entries(bits)) {
      // A multiple of 4 elements ends F4 and F6 tensors on a byte boundary.
      const shape = [rng.int(1, 3), 4 * rng.int(1, 4)];
      const bytes = Buffer.from(Uint8Array.from({ length: (shape[0] * shape[1] * b) / 8 }, () => rng.int(1, 255)));
      header[`t_${dtype}`] = { dtype, shape, data_offsets: [at, at + bytes.length] };
      data.push(bytes);
      at += bytes.length;
    }
    const st = SafetensorsFile.open(write("dtypes.safetensors", header, Buffer.concat(data)));
    try {
      Object.keys(bits).forEach((dtype, i) => {
        if (!readable.includes(dtype)) {
          expect(() => st.read(`t_${dtype}`)).toThrow(
            `tensor 't_${dtype}' is ${dtype}, a dtype this library does not support; it reads F32, F16, BF16, I32`,
          );
          return;
        }
        const t = st.read(`t_${dtype}`);
        expect(Buffer.from(t.viewBytes(0, t.bytes)).equals(data[i])).toBe(true);
        t.dispose();
      });
    } finally {
      st.close();
    }
  });

  test("a sub-byte tensor that does not end on a byte boundary is an error", () => {
    const n = 2 * rng.int(1, 20) + 1;
    const file = write("f4.safetensors", { x: { dtype: "F4", shape: [n], data_offsets: [0, (n + 1) / 2] } }, Buffer.alloc((n + 1) / 2, 7));
    expect(() => SafetensorsFile.open(file)).toThrow(`tensor 'x' (F4 [${n}]) is ${4 * n} bits, which does not end on a byte boundary`);
  });
});

test.each([
  [
    "too short",
    () => {
      const f = path.join(dir, "short.safetensors");
      fs.writeFileSync(f, Buffer.alloc(5));
      return f;
    },
    /too short for a safetensors header/,
  ],
  ["implausible header length", () => write("len.safetensors", {}, Buffer.alloc(0), 2 ** 40), /header length .* is not plausible/],
  ["header past the end", () => write("past.safetensors", "{}", Buffer.alloc(0), 50), /truncated/],
  ["bad JSON", () => write("json.safetensors", "{not json", Buffer.alloc(0)), /header is not valid JSON/],
  [
    "unknown dtype",
    () => write("dtype.safetensors", { x: { dtype: "Q4", shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1)),
    /tensor 'x' has unknown dtype "Q4"/,
  ],
  [
    "negative shape",
    () => write("shape.safetensors", { x: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, Buffer.alloc(4)),
    /tensor 'x' has an invalid shape/,
  ],
  [
    "size mismatch",
    () => write("size.safetensors", { x: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8)),
    /needs 12 bytes but its data_offsets span 8/,
  ],
  [
    "offsets past the end",
    () => write("end.safetensors", { x: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8)),
    /ends at byte 16 of the data but the file holds 8/,
  ],
  [
    "overlapping tensors",
    () =>
      write(
        "overlap.safetensors",
        {
          x: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          y: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        Buffer.alloc(12),
      ),
    /tensors 'x' and 'y' overlap/,
  ],
  ["missing file", () => path.join(dir, "nope.safetensors"), /cannot open/],
])("%s is a clear error naming the file", (_, make, message) => {
  const file = (make as () => string)();
  expect(() => SafetensorsFile.open(file)).toThrow(message as RegExp);
  expect(() => SafetensorsFile.open(file)).toThrow(file);
});

describe("config.json", () => {
  const base = {
    architectures: ["LlamaForCausalLM"],
    vocab_size: 100,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    max_position_embeddings: 2048,
  };
  test("reads a Llama config with llama3 rope scaling", () => {
    const c = parseConfig({
      ...base,
      rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    });
    expect(c).toMatchObject({
      architecture: "LlamaForCausalLM",
      headDim: 16,
      kvHeads: 2,
      ropeTheta: 500000,
      slidingWindow: null,
      attentionBias: false,
      outputBias: false,
    });
    expect(c.ropeScaling.type).toBe("llama3");
  });
  test("reads the newer rope_parameters form", () => {
    const { rope_theta: _, ...rest } = base;
    const c = parseConfig({ ...rest, rope_parameters: { rope_type: "linear", factor: 2, rope_theta: 1234 } });
    expect(c.ropeTheta).toBe(1234);
    expect(c.ropeScaling).toEqual({ type: "linear", factor: 2 });
  });
  test("Mistral's sliding window and Qwen2's bias", () => {
    expect(parseConfig({ ...base, architectures: ["MistralForCausalLM"], sliding_window: 4096 }).slidingWindow).toBe(4096);
    expect(parseConfig({ ...base, architectures: ["Qwen2ForCausalLM"], tie_word_embeddings: true })).toMatchObject({
      attentionBias: true,
      tieWordEmbeddings: true,
    });
  });
  test("attention_bias: Llama's puts biases on q, k, v and o (transformers' LlamaAttention); Mistral's is ignored; Qwen2 biases q, k, v", () => {
    const biases = (arch: string, attentionBias: boolean) => {
      const c = parseConfig({ ...base, architectures: [arch], attention_bias: attentionBias });
      return [c.attentionBias, c.outputBias];
    };
    expect(biases("LlamaForCausalLM", true)).toEqual([true, true]);
    expect(biases("LlamaForCausalLM", false)).toEqual([false, false]);
    expect(biases("MistralForCausalLM", true)).toEqual([false, false]);
    expect(biases("Qwen2ForCausalLM", true)).toEqual([true, false]);
    expect(biases("Qwen2ForCausalLM", false)).toEqual([true, false]);
  });
  test("hidden_act silu or swish (both SiLU in transformers' ACT2FN), or left out; mlp_bias ignored where transformers ignores it", () => {
    for (const act of ["silu", "swish", undefined]) expect(() => parseConfig({ ...base, hidden_act: act })).not.toThrow();
    for (const arch of ["MistralForCausalLM", "Qwen2ForCausalLM"])
      expect(parseConfig({ ...base, architectures: [arch], mlp_bias: true }).architecture).toBe(arch);
  });
  test.each([
    ["llama", "LlamaForCausalLM"],
    ["mistral", "MistralForCausalLM"],
    ["qwen2", "Qwen2ForCausalLM"],
  ])("without architectures (or with none listed), model_type %s picks %s, as transformers' Auto classes do", (modelType, arch) => {
    const { architectures: _, ...rest } = base;
    expect(parseConfig({ ...rest, model_type: modelType }).architecture).toBe(arch);
    expect(parseConfig({ ...rest, architectures: [], model_type: modelType }).architecture).toBe(arch);
  });
  test.each([
    [{ architectures: ["GPT2LMHeadModel"] }, /architecture "GPT2LMHeadModel" is not supported; supported: LlamaForCausalLM/],
    [
      { architectures: undefined, model_type: "gpt2" },
      /has no 'architectures', and its model_type "gpt2" is none of llama, mistral, qwen2: set 'architectures' to one of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM/,
    ],
    [{ architectures: undefined }, /has no 'architectures', and its model_type undefined is none of llama, mistral, qwen2/],
    [
      { architectures: "LlamaForCausalLM" },
      /'architectures' must be a list naming the model class \(e\.g\. \["LlamaForCausalLM"\]\), got "LlamaForCausalLM"/,
    ],
    [{ hidden_act: "gelu" }, /'hidden_act' "gelu" is not supported: the MLP's activation is SiLU \("silu" or "swish"\)/],
    [{ hidden_act: "relu" }, /'hidden_act' "relu" is not supported/],
    [{ hidden_act: 5 }, /'hidden_act' 5 is not supported/],
    [{ mlp_bias: true }, /mlp_bias=true \(biases on the gate, up and down projections\) is not supported/],
    [{ mlp_bias: "yes" }, /'mlp_bias' must be true or false, got "yes"/],
    [
      { quantization_config: { quant_method: "fp8" } },
      /has a quantization_config \(\{"quant_method":"fp8"\}\): quantized checkpoints are not supported/,
    ],
    [{ num_key_value_heads: 3 }, /'num_key_value_heads' must be an integer in \[1, \d+\] dividing num_attention_heads \(\d+\), got 3/],
    [{ hidden_size: 0 }, /'hidden_size' must be an integer in \[1, \d+\], got 0/],
    [{ rope_scaling: { rope_type: "yarn", factor: 4 } }, /rope_scaling type "yarn" is not supported/],
    [{ rope_scaling: { rope_type: "llama3", factor: 8 } }, /rope_scaling.low_freq_factor must be a finite number > 0/],
    [{ rope_scaling: { factor: 8 } }, /rope_scaling needs its rope_type \(or type\): default, linear or llama3; got \{"factor":8\}/],
  ])("rejects %j", (patch, message) => {
    expect(() => parseConfig({ ...base, ...(patch as object) }, "/models/x/config.json")).toThrow(message);
    expect(() => parseConfig({ ...base, ...(patch as object) }, "/models/x/config.json")).toThrow("/models/x/config.json");
  });
  test("llama3 inverse frequencies: high frequencies kept, low ones divided by the factor, smooth between", () => {
    const scaling = { type: "llama3" as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    const f = ropeInverseFrequencies({ headDim: 128, ropeTheta: 500000, ropeScaling: scaling });
    const plain = ropeInverseFrequencies({ headDim: 128, ropeTheta: 500000, ropeScaling: { type: "default" } });
    expect(f[0]).toBe(plain[0]); // wavelength 2π < 8192/4
    expect(f[63]).toBeCloseTo(plain[63] / 8, 12); // wavelength far above 8192
    const mid = f.findIndex((x, i) => x !== plain[i] && Math.abs(x - plain[i] / 8) > 1e-12);
    expect(f[mid]).toBeLessThan(plain[mid]);
    expect(f[mid]).toBeGreaterThan(plain[mid] / 8);
  });
});
