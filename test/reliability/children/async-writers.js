// Index tensors that an async call in flight may write: readFile's destination, an async
// kernel's output. A call that reads one as indices is refused until that call settles (a sync
// kernel used to check the tensor, then read it while the file was still landing in it: an
// out-of-bounds read). Async calls that only read a tensor as indices do not hold it up. Reports
// each case's outcome.

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { addon, float, ints, randomFloats, report, tensor } = require("./common");

const d = 16;
const rows = 50;

async function main() {
  const out = {};
  const table = tensor([rows, d], float, randomFloats(rows * d));
  const embedded = tensor([4, d], float);
  const valid = Int32Array.from({ length: 4 }, () => Math.floor(Math.random() * rows));

  // readFile into the ids.
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lt-writers-")), "ids.bin");
  fs.writeFileSync(file, Buffer.from(valid.buffer));
  const fd = fs.openSync(file, "r");
  const ids = ints([0, 0, 0, 0]);
  const reading = ids.readFile(fd, 0, 0, 16);
  const embed = (args) => {
    try {
      addon.embedding(args);
      return "ran";
    } catch (err) {
      return err.message;
    }
  };
  out.whileReadingFile = embed({ ids, table, out: embedded });
  out.asyncWhileReadingFile = await addon.embeddingAsync({ ids, table, out: embedded }).then(
    () => "ran",
    (err) => err.message,
  );
  // A view of the same memory is the same memory.
  out.sliceWhileReadingFile = embed({ ids: ids.slice(0, [4]), table, out: embedded });
  await reading;
  fs.closeSync(fd);
  out.afterReadingFile = embed({ ids, table, out: embedded });
  out.readBack = Array.from(ids.read()).join(",") === Array.from(valid).join(",");

  // An async kernel's output.
  const logits = tensor([4, rows], float, randomFloats(4 * rows));
  const best = ints([0, 0, 0, 0]);
  const arg = addon.argmaxAsync({ logits, out: best });
  out.whileArgmax = embed({ ids: best, table, out: embedded });
  await arg;
  out.afterArgmax = embed({ ids: best, table, out: embedded });

  // Async calls reading the same ids as indices, in flight together, and a sync one meanwhile.
  const shared = ints(Array.from(valid));
  const outs = [0, 1, 2].map(() => tensor([4, d], float));
  const readers = outs.map((o) => addon.embeddingAsync({ ids: shared, table, out: o }));
  out.syncBesideAsyncReaders = embed({ ids: shared, table, out: embedded });
  out.asyncReaders = await Promise.all(readers).then(
    () => "ran",
    (err) => err.message,
  );
  // A page table a cached prefill reads, and rope positions it reads in place: only read, so
  // calls in flight together over them run.
  const pool = () => tensor([4, 4, 1, 8], float, randomFloats(4 * 4 * 8));
  const kPages = pool(),
    vPages = pool();
  const pageTable = ints([0, 1, 2, 3]);
  const prefill = () => ({
    q: tensor([4, 2, 8], float, randomFloats(64)),
    out: tensor([4, 2, 8], float),
    scale: 0.35,
    cached: { kPages, vPages, pageTable, length: 8 },
  });
  const first = addon.prefillAttentionAsync(prefill());
  out.cachedTableReadTwice = await addon.prefillAttentionAsync(prefill()).then(
    () => "ran",
    (err) => err.message,
  );
  await first;
  const block = ints([0, 1, 2, 3, 4, 5, 6, 7]); // positions | slots, as a decode step packs them
  const rope = () => ({
    qkv: tensor([4, 32], float, randomFloats(128)),
    positions: block.slice(0, [4]),
    slots: block.slice(4, [4]),
    invFreq: tensor([4], "f32", randomFloats(4)),
    kPages,
    vPages,
    q: tensor([4, 2, 8], float),
  });
  const roping = addon.ropeAppendKvAsync(rope());
  out.positionsReadMeanwhile = embed({ ids: block.slice(0, [4]), table, out: embedded });
  await roping;
  report(out);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
