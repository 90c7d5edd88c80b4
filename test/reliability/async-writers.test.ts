// Defect: a kernel checked an index tensor, then read it in place while an async call still in
// flight (readFile, an async kernel's output) went on writing it: indices nobody checked, an
// out-of-bounds read. Such a tensor is now refused as indices until that call settles; async calls
// that only read it as indices do not hold it up.
import { reportOf, runChild } from "./child";

test("an index tensor an async call in flight may write is refused until that call settles", () => {
  const refused =
    "embedding: an index tensor (a page table, slots, positions or token ids) is being written by an async call still in flight " +
    "(readFile, or a ...Async kernel's output): await that call before the tensor is read as indices";
  expect(reportOf(runChild("async-writers.js"))).toEqual({
    whileReadingFile: refused,
    asyncWhileReadingFile: refused,
    sliceWhileReadingFile: refused,
    afterReadingFile: "ran",
    readBack: true,
    whileArgmax: refused,
    afterArgmax: "ran",
    syncBesideAsyncReaders: "ran",
    asyncReaders: "ran",
    cachedTableReadTwice: "ran",
    positionsReadMeanwhile: "ran",
  });
});

test("a view's memory handed on with ArrayBuffer.prototype.transfer() outlives dispose() until that buffer is collected", () => {
  // transfer() is behind --harmony in Node 20 and on by default from Node 22.
  const flags = Number(process.versions.node.split(".")[0]) < 22 ? ["--harmony", "--expose-gc"] : ["--expose-gc"];
  expect(reportOf(runChild("view-transfer.js", [], flags))).toEqual({
    kept: true,
    movedStill: true,
    victimIntact: true,
    freed: true,
    detached: true,
    freedAtDispose: true,
  });
});
