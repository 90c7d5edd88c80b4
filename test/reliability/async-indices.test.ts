// Defect: async kernels checked a copy of their index tensors but the worker read the live
// tensors, so a write() after the call was issued (reusing one slots or page-table tensor
// across steps is enough) put unchecked indices in front of the kernel: out-of-bounds writes.
import { asyncKernelsReadCheckedIndices, reportOf, runChild } from "./child";

test("async kernels read the index tensors as they were checked, whatever is written to them afterwards", () => {
  // One libuv worker, kept busy, so every call is still queued when its indices are overwritten.
  const report = reportOf<Record<string, string>>(runChild("async-indices.js", [], [], { UV_THREADPOOL_SIZE: "1" }));
  expect(report).toEqual(asyncKernelsReadCheckedIndices);
});
