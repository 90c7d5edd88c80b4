// Safetensors files and shard indexes are checked as the reference implementation checks them:
// the tensors cover the data region exactly (contiguous from 0, no gap or overlap, ending at the
// file's end), so a header length off by a few bytes, trailing bytes or a dropped entry are
// errors, never tensors read from the wrong place. Shard indexes must point at files and
// tensors that exist, each tensor in one shard.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadModel, SafetensorsError } from "../../lib";
import { SafetensorsFile } from "../../lib/checkpoint/safetensors";
import { copyFixture, editJson } from "../helpers/model-dir";
import { Random } from "../helpers/reference";
import { type SafetensorsLayout, writeSafetensors } from "../helpers/safetensors-file";

const rng = new Random();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lt-st-rel-"));

const write = (name: string, header: object | string | Buffer, data: Buffer, layout?: SafetensorsLayout) =>
  writeSafetensors(path.join(dir, name), header, data, layout);

const twoTensors = () => {
  const a = rng.normals(4),
    b = rng.normals(2);
  return {
    header: { a: { dtype: "F32", shape: [4], data_offsets: [0, 16] }, b: { dtype: "F32", shape: [2], data_offsets: [16, 24] } },
    data: Buffer.concat([Buffer.from(a.buffer), Buffer.from(b.buffer)]),
    a,
    b,
  };
};

test("a padded header reads back exactly (the padding is allowed)", () => {
  const { header, data, a, b } = twoTensors();
  const st = SafetensorsFile.open(write("padded.safetensors", header, data, { pad: 7 }));
  try {
    expect(Array.from(st.read("a").toArray())).toEqual(Array.from(a));
    expect(Array.from(st.read("b").toArray())).toEqual(Array.from(b));
  } finally {
    st.close();
  }
});

test.each([1, 3, 7])("a length prefix shortened by %i byte(s) into the padding is an error, not tensors read early", (short) => {
  const { header, data } = twoTensors();
  const file = write(`short-${short}.safetensors`, header, data, { pad: 7, lengthDelta: -short });
  expect(() => SafetensorsFile.open(file)).toThrow(SafetensorsError);
  expect(() => SafetensorsFile.open(file)).toThrow(
    new RegExp(`tensors cover 24 bytes of data but the file holds ${24 + short} after the header`),
  );
});

test("the same shortened prefix in a real checkpoint fails loadModel", async () => {
  const model = copyFixture("qwen2-tiny");
  const file = path.join(model, "model.safetensors");
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const json = bytes
    .subarray(8, 8 + n)
    .toString("utf8")
    .trimEnd();
  // Re-pad the header with 6 spaces and claim 3 bytes fewer than it has.
  const padded = Buffer.from(`${json}      `);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(padded.length - 3));
  fs.writeFileSync(file, Buffer.concat([len, padded, bytes.subarray(8 + n)]));
  await expect(loadModel(model, { device: "cpu" })).rejects.toThrow(
    /model\.safetensors: tensors cover \d+ bytes of data but the file holds \d+ after the header/,
  );
});

test.each([
  [
    "a gap between tensors",
    () =>
      write(
        "gap.safetensors",
        {
          a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
          b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
        },
        Buffer.alloc(12),
      ),
    /bytes \[4, 8\) of the data lie between tensors 'a' and 'b' and belong to no tensor/,
  ],
  [
    "data not starting at 0",
    () => write("start.safetensors", { a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, Buffer.alloc(8)),
    /bytes \[0, 4\) of the data lie before tensor 'a' and belong to no tensor/,
  ],
  [
    "trailing bytes",
    () => write("trail.safetensors", { a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(9)),
    /tensors cover 4 bytes of data but the file holds 9 after the header/,
  ],
  [
    "a dropped entry (duplicate JSON key)",
    () =>
      write(
        "dup.safetensors",
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        Buffer.alloc(8),
      ),
    /bytes \[0, 4\) of the data lie before tensor 'a'/,
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
  [
    "a header not starting with {",
    () => write("start-ws.safetensors", ' {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', Buffer.alloc(4)),
    /header must start with '\{'/,
  ],
  [
    "a header that is not UTF-8 (but JSON once decoded loosely)",
    () =>
      write(
        "utf8.safetensors",
        Buffer.concat([Buffer.from('{"__metadata__":{"n":"'), Buffer.from([0xff]), Buffer.from('"}}')]),
        Buffer.alloc(0),
      ),
    /header is not valid UTF-8/,
  ],
  [
    "a JSON array header",
    () => write("array.safetensors", "[1, 2]", Buffer.alloc(0)),
    /header must start with '\{'|header is not a JSON object/,
  ],
  [
    "__metadata__ that is not a string map",
    () => write("meta.safetensors", { __metadata__: { n: 5 } }, Buffer.alloc(0)),
    /__metadata__ must map strings to strings/,
  ],
  ["an entry that is not an object", () => write("entry.safetensors", { a: 5 }, Buffer.alloc(0)), /entry 'a' is not an object/],
  [
    "a shape whose size overflows",
    () => write("huge.safetensors", { a: { dtype: "F32", shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 4] } }, Buffer.alloc(4)),
    /tensor 'a' has shape \[1073741824,1073741824,1073741824\], too large/,
  ],
  [
    "a fractional offset",
    () => write("frac.safetensors", { a: { dtype: "F32", shape: [1], data_offsets: [0, 4.5] } }, Buffer.alloc(4)),
    /invalid data_offsets/,
  ],
])("%s is a SafetensorsError naming the file", (_, make, message) => {
  const file = make();
  expect(() => SafetensorsFile.open(file)).toThrow(SafetensorsError);
  expect(() => SafetensorsFile.open(file)).toThrow(message);
  expect(() => SafetensorsFile.open(file)).toThrow(file);
});

test("a directory in place of a file is a SafetensorsError", () => {
  expect(() => SafetensorsFile.open(dir)).toThrow(/is not a regular file/);
});

describe("shard indexes", () => {
  const index = "model.safetensors.index.json";
  const sharded = () => copyFixture("llama-tiny");

  test.each([
    [
      "a weight_map entry pointing at a missing file",
      (m: Record<string, unknown>) => ({ ...m, "model.norm.weight": "model-00009-of-00004.safetensors" }),
      /model-00009-of-00004\.safetensors: cannot open/,
    ],
    [
      "a weight_map entry pointing at a tensor the shard lacks",
      (m: Record<string, unknown>) => ({ ...m, "model.norm.weight": "model-00001-of-00004.safetensors" }),
      /lists 'model\.norm\.weight' in model-00001-of-00004\.safetensors, but that file has no such tensor/,
    ],
    [
      "a shard path leaving the model directory",
      (m: Record<string, unknown>) => ({ ...m, "model.norm.weight": "../model-00003-of-00004.safetensors" }),
      /weight_map entry 'model\.norm\.weight' names "\.\.\/model-00003-of-00004\.safetensors", which is not a file name inside the model directory/,
    ],
    [
      "the directory itself (.)",
      (m: Record<string, unknown>) => ({ ...m, "model.norm.weight": "." }),
      /weight_map entry 'model\.norm\.weight' names "\.", which is not a file name inside the model directory/,
    ],
    [
      "the directory above (..)",
      (m: Record<string, unknown>) => ({ ...m, "model.norm.weight": ".." }),
      /weight_map entry 'model\.norm\.weight' names "\.\.", which is not a file name inside the model directory/,
    ],
    [
      "a file name that is not a string",
      (m: Record<string, unknown>) => ({ ...m, "model.norm.weight": 3 }),
      /weight_map entry 'model\.norm\.weight' names 3, which is not a file name inside the model directory/,
    ],
    [
      "an index missing a tensor its shards hold",
      (m: Record<string, unknown>) => {
        const rest = { ...m };
        delete rest["model.norm.weight"];
        return rest;
      },
      /model-00003-of-00004\.safetensors holds 'model\.norm\.weight', which the index does not list/,
    ],
  ])("%s is a SafetensorsError", async (_, edit, message) => {
    const model = sharded();
    editJson(model, index, (j) => ({ ...j, weight_map: edit(j.weight_map as Record<string, unknown>) }));
    await expect(loadModel(model, { device: "cpu" })).rejects.toThrow(SafetensorsError);
    await expect(loadModel(model, { device: "cpu" })).rejects.toThrow(message);
  });

  test.each([
    ["null", "null", /has no 'weight_map' object/],
    ["a weight_map array", JSON.stringify({ weight_map: ["a"] }), /has no 'weight_map' object/],
    ["broken JSON", "{", /cannot be read as JSON/],
  ])("an index holding %s is a SafetensorsError", async (_, text, message) => {
    const model = sharded();
    fs.writeFileSync(path.join(model, index), text);
    await expect(loadModel(model, { device: "cpu" })).rejects.toThrow(SafetensorsError);
    await expect(loadModel(model, { device: "cpu" })).rejects.toThrow(message);
  });

  test("a tensor held by two shards is an error, whichever the index names", async () => {
    const model = sharded();
    // Shard 4 holds only lm_head.weight; give it model.norm.weight as well (shard 3 has it too).
    const norm = SafetensorsFile.open(path.join(model, "model-00003-of-00004.safetensors"));
    const lm = SafetensorsFile.open(path.join(model, "model-00004-of-00004.safetensors"));
    const normBytes = Buffer.from(norm.read("model.norm.weight").toArray().buffer);
    const lmBytes = Buffer.from(lm.read("lm_head.weight").toArray().buffer);
    const lmEntry = lm.get("lm_head.weight");
    norm.close();
    lm.close();
    const header = {
      "lm_head.weight": { dtype: lmEntry.dtype, shape: lmEntry.shape, data_offsets: [0, lmBytes.length] },
      "model.norm.weight": {
        dtype: "BF16",
        shape: [normBytes.length / 2],
        data_offsets: [lmBytes.length, lmBytes.length + normBytes.length],
      },
    };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(path.join(model, "model-00004-of-00004.safetensors"), Buffer.concat([len, json, lmBytes, normBytes]));
    await expect(loadModel(model, { device: "cpu" })).rejects.toThrow(
      /'model\.norm\.weight' is in both model-0000[34]-of-00004\.safetensors and model-0000[34]-of-00004\.safetensors/,
    );
  });

  test("integer weights are refused before anything is read", async () => {
    const model = copyFixture("qwen2-tiny");
    const file = path.join(model, "model.safetensors");
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
    const e = header["model.norm.weight"];
    // The same bytes, declared as integers.
    const integer = e.dtype === "F32" ? "I32" : "I16";
    header["model.norm.weight"] = { ...e, dtype: integer };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([len, json, bytes.subarray(8 + n)]));
    await expect(loadModel(model, { device: "cpu" })).rejects.toThrow(
      /tensor 'model\.norm\.weight' is I(32|16); weights must be F32, F16, BF16/,
    );
  });
});
