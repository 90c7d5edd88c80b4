// The CUDA forms of two async cases. test/reliability/async-indices.test.ts: an async call's
// index tensors are overwritten with out-of-range values right after it is issued; the call
// uploads the indices it checked on the stream just before its kernel, so its output equals the
// sync call's. test/async.test.ts: a call aborted while it waits for a thread does not run.
import { abortedWhileWaiting, abortedWhileWaitingOutcome } from "../helpers/aborted-async";
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

describeWithCuda("async cancel")("an async CUDA kernel aborted while it waits for a thread", () => {
  test("does not run: it rejects with the reason and its output is untouched", () => {
    expect(abortedWhileWaiting("cuda:0")).toEqual(abortedWhileWaitingOutcome);
  });
});
