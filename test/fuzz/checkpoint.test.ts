// Malformed checkpoints through loadModel: safetensors files (length prefix, header fields,
// offsets with gaps and overlaps, truncation, stray bytes, shard indexes naming missing shards
// or tensors), config.json fields (wrong types, missing, huge, negative, fractional, NaN) and
// tokenizer files (any JSON leaf replaced or removed, chat templates that do not parse). Each
// load must fail with a useful Error or give the weights our own parser reads from the files
// and a model that generates valid tokens (the unmutated model's, where the change is inert).
import * as path from "node:path";
import fc from "fast-check";
import type { CheckpointCase, SafetensorsMutation } from "./cases/checkpoint";
import { enumeratedTest, propertyTest } from "./harness/run-cases";
import { oddValue } from "./harness/values";

const modulePath = path.join(__dirname, "cases", "checkpoint.ts");
const options = { modulePath, batchSize: 60, caseTimeoutMs: 30000 };

const jsonish = fc.oneof(
  oddValue,
  fc.constantFrom("F32", "BF16", "I64", "U8", "Q4", [1], [-1], [1.5], [2 ** 53], [0, 0], [[1]], {}, { dtype: "F32" }),
);
const safetensorsMutation: fc.Arbitrary<SafetensorsMutation> = fc.oneof(
  fc.constant({ kind: "none" as const }),
  fc.record({ kind: fc.constant("padding" as const), spaces: fc.nat(64) }),
  fc.constant({ kind: "reorder" as const }),
  fc.record({ kind: fc.constant("lengthPrefix" as const), delta: fc.integer({ min: -24, max: 24 }).filter((d) => d !== 0) }),
  fc.record({
    kind: fc.constant("lengthValue" as const),
    value: fc.constantFrom("0", "1", "2", "7", String(2n ** 32n), String(2n ** 63n), String(2n ** 64n - 1n), String(100 * 2 ** 20 + 1)),
  }),
  fc.record({
    kind: fc.constant("field" as const),
    tensor: fc.nat(40),
    field: fc.constantFrom("dtype" as const, "shape" as const, "data_offsets" as const, "entry" as const),
    value: jsonish,
  }),
  fc.record({
    kind: fc.constant("offsets" as const),
    tensor: fc.nat(40),
    shift: fc.oneof(
      fc.integer({ min: -8, max: 8 }).filter((d) => d !== 0),
      fc.constantFrom(2 ** 32, -(2 ** 32), 2 ** 53),
    ),
    which: fc.constantFrom("begin" as const, "end" as const, "both" as const),
  }),
  fc.record({ kind: fc.constant("truncate" as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), bytes: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant("flip" as const), position: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("metadata" as const), value: jsonish }),
  fc.record({
    kind: fc.constant("headerText" as const),
    text: fc.constantFrom(
      "",
      "{",
      "[]",
      "null",
      "1",
      '"x"',
      '{"__metadata__":{}}',
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
    ),
  }),
  fc.record({
    kind: fc.constant("index" as const),
    change: fc.constantFrom(
      "missingShard" as const,
      "wrongShard" as const,
      "missingTensor" as const,
      "notObject" as const,
      "badJson" as const,
      "nonString" as const,
      "extraName" as const,
      "dropName" as const,
    ),
    tensor: fc.nat(40),
  }),
);

const safetensorsCase = fc.record({
  target: fc.constant("safetensors" as const),
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
  dtype: fc.constantFrom("F32" as const, "F16" as const, "BF16" as const),
  shards: fc.integer({ min: 1, max: 3 }),
  shard: fc.nat(2),
  mutation: safetensorsMutation,
});

const configFields = [
  "architectures",
  "model_type",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "vocab_size",
  "max_position_embeddings",
  "rms_norm_eps",
  "rope_theta",
  "rope_scaling",
  "rope_parameters",
  "bos_token_id",
  "eos_token_id",
  "tie_word_embeddings",
  "sliding_window",
  "torch_dtype",
  "transformers_version",
  "unknown_field",
];
const configValue = fc.oneof(
  oddValue,
  fc.constantFrom(1e9, 2 ** 31, 1e6, 65536, 1e15, ["LlamaForCausalLM"], ["MistralForCausalLM"], ["GPT2"], [], [1, 2], [1e9], [-1], ["1"]),
  fc.record(
    {
      rope_type: fc.constantFrom("llama3", "linear", "default", "yarn", 5),
      factor: oddValue,
      low_freq_factor: oddValue,
      high_freq_factor: oddValue,
      original_max_position_embeddings: oddValue,
      rope_theta: oddValue,
    },
    { requiredKeys: ["rope_type"] },
  ),
);
const configCase = fc.record({
  target: fc.constant("config" as const),
  seed: fc.constant(1),
  field: fc.constantFrom(...configFields),
  value: configValue,
  remove: fc.boolean(),
  text: fc.option(fc.constantFrom("", "{", "[]", "null", "NaN", '{"num_hidden_layers": NaN}', '{"num_hidden_layers": 1e999}', "\u0000"), {
    nil: undefined,
    freq: 8,
  }),
});

const templateFragment = fc.constantFrom(
  "{{ bos_token }}",
  "{% for m in messages %}",
  "{% endfor %}",
  "{{ m['content'] }}",
  "{{ m.role | upper }}",
  "{% if add_generation_prompt %}",
  "{% endif %}",
  "{{ raise_exception('refused') }}",
  "{{ missing.attribute }}",
  "{{ messages[5].content }}",
  "{% set x = messages | length %}",
  "{{ x * 'a' }}",
  "{{",
  "}}",
  "{%",
  "text ",
  "\n",
);
const message = fc.record({
  role: fc.oneof(fc.constantFrom("user", "assistant", "system"), oddValue),
  content: fc.oneof(fc.string({ maxLength: 20 }), oddValue),
});
const tokenizerCase = fc.record({
  target: fc.constant("tokenizer" as const),
  seed: fc.constant(1),
  file: fc.constantFrom("tokenizer.json" as const, "tokenizer_config.json" as const),
  path: fc.nat(),
  value: fc.oneof(oddValue, fc.constantFrom(2 ** 32 + 5, 1.5, "7", -1, 1e9, 383, 384, {}, [], [["a", "b"]])),
  remove: fc.boolean(),
  text: fc.option(fc.constantFrom("", "{", "[]", "null", '{"model": null}'), { nil: undefined, freq: 10 }),
  template: fc.option(
    fc.array(templateFragment, { maxLength: 8 }).map((parts) => parts.join("")),
    { nil: undefined, freq: 3 },
  ),
  promptTokens: fc.option(fc.constant(true), { nil: undefined, freq: 3 }),
  prompt: fc.oneof(fc.string({ maxLength: 24 }), fc.string({ unit: "binary", maxLength: 12 }), fc.array(message, { maxLength: 3 })),
});

propertyTest<CheckpointCase>(
  "malformed safetensors files and shard indexes fail with a useful Error, or load the exact bytes",
  "safetensors",
  safetensorsCase,
  0,
  200,
  options,
);

propertyTest<CheckpointCase>(
  "config.json with wrong, missing, huge, negative, fractional or NaN fields fails with a useful Error, or loads a sane config",
  "config.json",
  configCase,
  1,
  120,
  options,
);

propertyTest<CheckpointCase>(
  "malformed tokenizer files and chat templates fail with a useful Error, or tokenize into the vocabulary",
  "tokenizer",
  tokenizerCase,
  2,
  100,
  options,
);

enumeratedTest(
  "a checkpoint tensor over 4 GiB (a sparse file) loads with the file's bytes, or fails with a useful Error",
  "checkpoint over 4 GiB",
  (): CheckpointCase[] => [{ target: "bigTensor", rows: 2 ** 27 + 8 }],
  { modulePath, batchSize: 1, caseTimeoutMs: 120000 },
  300000,
);

const integerFields = [
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "vocab_size",
  "max_position_embeddings",
  "bos_token_id",
  "eos_token_id",
  "rms_norm_eps",
  "rope_theta",
];
const extremes = [1e9, 2 ** 31, 2 ** 53, -1, 0.5];

enumeratedTest(
  "config.json numbers at the extremes (1e9, 2^31, 2^53, -1, 0.5) in every numeric field: a useful Error, never a crash",
  "config extremes",
  (): CheckpointCase[] =>
    integerFields.flatMap((field) => extremes.map((value) => ({ target: "config" as const, seed: 1, field, value, remove: false }))),
  { modulePath, batchSize: 30, caseTimeoutMs: 15000 },
  600000,
);

const loadOptions = fc.record({
  target: fc.constant("loadOptions" as const),
  options: fc.record(
    {
      device: fc.oneof(fc.constantFrom("cpu", "cpu", "cuda", "cuda:7", "tpu", ""), oddValue),
      dtype: fc.oneof(fc.constantFrom("f32", "bf16", "f16", "i32", "F32"), oddValue),
      kvCacheBytes: fc.oneof(fc.constantFrom(2 ** 20, 65536, 0, 1), oddValue),
      pageSize: fc.oneof(fc.constantFrom(16, 1, 7, 64), oddValue),
      computeDType: fc.oneof(fc.constantFrom("f32", "bf16", "f16", "i32"), oddValue),
    },
    { requiredKeys: [] },
  ),
  onProgress: fc.constantFrom("none" as const, "function" as const, "throws" as const, "odd" as const),
  signal: fc.constantFrom("none" as const, "none" as const, "aborted" as const, "fake" as const, "abortMidway" as const),
});

propertyTest<CheckpointCase>(
  "loadModel options (device, dtypes, pool size, page size, onProgress, signal): a useful Error, or the model with default options' tokens",
  "loadModel options",
  loadOptions,
  7,
  80,
  options,
);
