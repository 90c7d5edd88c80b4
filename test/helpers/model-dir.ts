// Copies of the fixture checkpoints to break on purpose, or to give other weights.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SafetensorsFile } from "../../lib/checkpoint/safetensors";
import { fixtureRoot } from "./fixtures";
import { writeSafetensors } from "./safetensors-file";

/** A fresh temporary copy of a fixture model directory. */
export function copyFixture(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `lt-${name}-`));
  for (const f of fs.readdirSync(path.join(fixtureRoot, name))) fs.copyFileSync(path.join(fixtureRoot, name, f), path.join(dir, f));
  return dir;
}

/** Rewrites a JSON file of `dir` through `edit`. */
export function editJson(dir: string, file: string, edit: (json: Record<string, unknown>) => unknown): void {
  const at = path.join(dir, file);
  fs.writeFileSync(at, JSON.stringify(edit(JSON.parse(fs.readFileSync(at, "utf8")))));
}

/** A tensor as a safetensors file stores it. */
export interface StoredTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

/** Every tensor of a fixture checkpoint as its files store it, by name. */
export function fixtureTensors(name: string): Map<string, StoredTensor> {
  const dir = path.join(fixtureRoot, name);
  const out = new Map<string, StoredTensor>();
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith(".safetensors"))) {
    const file = SafetensorsFile.open(path.join(dir, f));
    const bytes = fs.readFileSync(path.join(dir, f));
    for (const e of file.entries.values()) out.set(e.name, { dtype: e.dtype, shape: e.shape, bytes: bytes.subarray(e.begin, e.end) });
    file.close();
  }
  return out;
}

/** A fresh temporary copy of fixture `name` whose weights are `tensors`, in one model.safetensors. */
export function fixtureWithTensors(name: string, tensors: Map<string, StoredTensor>): string {
  const dir = copyFixture(name);
  for (const f of fs.readdirSync(dir)) if (f.includes(".safetensors")) fs.rmSync(path.join(dir, f));
  const header: Record<string, object> = {};
  let at = 0;
  for (const [tensorName, t] of tensors) {
    header[tensorName] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.bytes.length] };
    at += t.bytes.length;
  }
  writeSafetensors(path.join(dir, "model.safetensors"), header, Buffer.concat([...tensors.values()].map((t) => t.bytes)));
  return dir;
}

/** f32 values as a stored F32 tensor. */
export const storedF32 = (values: Float32Array, shape: number[]): StoredTensor => ({
  dtype: "F32",
  shape,
  bytes: Buffer.from(values.buffer, values.byteOffset, values.byteLength),
});
