// A file's bytes read straight into device memory (the path every checkpoint takes to the GPU):
// through the pinned halves a chunk at a time, so ranges longer than one chunk, ending inside
// one, and starting at odd offsets of the file and the tensor all arrive intact; a bad range is
// a rejected Promise; and a model loads with its weights read this way (test/gpu/model.test.ts
// checks their logits against transformers).
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Tensor } from "../../lib";
import { describeWithCuda } from "../helpers/gpu";
import { Random } from "../helpers/reference";

const describeGpu = describeWithCuda("read-file");
const rng = new Random();

describeGpu("readFile into CUDA memory", () => {
  // Two chunks and a part of a third (chunks are 32 MiB): both halves are used, and the first
  // again once its copy has finished.
  const bytes = (2 << 25) + rng.int(1, 1 << 24);
  let dir = "",
    file = "",
    contents = Buffer.alloc(0);
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "lt-read-"));
    file = path.join(dir, "bytes.bin");
    contents = crypto.randomBytes(bytes);
    fs.writeFileSync(file, contents);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("the asked range of the file lands in the asked range of the tensor, and nothing else changes", async () => {
    const fd = fs.openSync(file, "r");
    try {
      for (const [position, byteOffset] of [
        [0, 0],
        [rng.int(1, 4095), 2 * rng.int(1, 4095)],
      ]) {
        const byteLength = bytes - position - rng.int(0, 4096);
        const elements = Math.ceil((byteOffset + byteLength) / 2) + 8;
        const before = Tensor.from(
          Uint16Array.from({ length: elements }, () => rng.int(0, 0xffff)),
          [elements],
          { dtype: "bf16" },
        );
        const t = before.to("cuda:0");
        await t.handle.readFile(fd, position, byteOffset, byteLength);
        const got = Buffer.from(t.toArray().buffer),
          want = Buffer.from(before.toArray().buffer);
        contents.copy(want, byteOffset, position, position + byteLength);
        expect({ position, byteOffset, same: got.equals(want) }).toEqual({ position, byteOffset, same: true });
        t.dispose();
        before.dispose();
      }
    } finally {
      fs.closeSync(fd);
    }
  });

  test("a range past the file's end is a rejected Promise that says so, and the next read works", async () => {
    const fd = fs.openSync(file, "r");
    // Past the end by more than a chunk: the chunks before it are on their way to the device
    // when the read fails.
    const t = Tensor.empty([Math.ceil((bytes + (40 << 20)) / 4)], "f32", "cuda:0");
    try {
      await expect(t.handle.readFile(fd, 0, 0, t.bytes)).rejects.toThrow(
        /the file ends at byte \d+, \d+ bytes before what was asked: it is truncated/,
      );
      await expect(t.handle.readFile(fd, bytes - 1000, 0, 3000)).rejects.toThrow(
        new RegExp(`the file ends at byte ${bytes}, 2000 bytes before what was asked: it is truncated`),
      );
      await t.handle.readFile(fd, 0, 0, bytes);
      expect(Buffer.from(t.toArray().buffer).subarray(0, bytes).equals(contents)).toBe(true);
    } finally {
      fs.closeSync(fd);
      t.dispose();
    }
  });
});
