// The CUDA form of test/reliability/async-indices.test.ts: an async call's index tensors are
// overwritten with out-of-range values right after it is issued. The call uploads the indices
// it checked on the stream just before its kernel, so its output equals the sync call's.
import { describeWithCuda } from "../helpers/gpu";
import { asyncKernelsReadCheckedIndices, reportOf, runChild } from "../reliability/child";

describeWithCuda("async index snapshot")("async CUDA kernels and later writes to their indices", () => {
  test("each async call reads the indices as they were checked", () => {
    const report = reportOf<Record<string, string>>(
      runChild("async-indices.js", [], [], { UV_THREADPOOL_SIZE: "1", LT_TEST_DEVICE: "cuda:0" }),
    );
    expect(report).toEqual(asyncKernelsReadCheckedIndices);
  });
});
