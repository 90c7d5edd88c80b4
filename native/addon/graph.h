// CUDA graphs for JS (the TypeScript side is lib/cuda-graph.ts). captureBegin starts recording
// every kernel call made on the input's device; captureEnd instantiates the recording as a
// graph; graphLaunch replays it after copying new contents into the input. Recording runs
// nothing. The i32 index tensors of the recorded calls (token ids, slots, page tables,
// lengths) must be views of the capture's input: each call's bounds checks are recorded with
// it and run on every launch's data before that data reaches the device, so a replay never
// hands a kernel an index the same call made eagerly would have refused.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "validate.h"

namespace lt::addon {

// What a check sees: the host contents of one call's index tensors, in the order they were passed
// to checkIndices, and per tensor the (start, count) ranges of its elements that changed since
// the launch that last checked them, relative to its first element, apart and in increasing
// order: the whole tensor on a call made now, on a graph's first launch, on a launch that names
// no changes and on the one after a launch that failed. A check must check what changed; what did
// not change held the same values when it last passed, so a check that keeps what it found
// (decode attention's, over page tables most of whose rows stay as they were from step to step)
// may skip it.
struct IndexContents {
  std::vector<const int32_t*> data;
  std::vector<std::vector<std::pair<size_t, size_t>>> changed;
  const int32_t* operator[](size_t tensor) const { return data[tensor]; }
};

// Checks one call's index tensors; throws lt::Error naming the call and the bad entry.
using IndexCheck = std::function<void(const IndexContents& contents)>;

// Runs `check` on the contents of `tensors` (i32, one device) now — from their host shadows,
// else from a copy read back — or, while their device is being captured, records it so that
// every launch of the graph runs it on the data launched with. Returns, per tensor, the memory
// the kernel must read: the tensor's own for a sync call (it runs, or is queued on the stream
// ahead of any later write(), before JS runs again), or for an async or CPU call the checked
// copy, which the call owns (IndexSnapshot). Tensors an async call in flight may write are refused.
std::vector<const int32_t*> checkIndices(KernelArgs& a, const std::vector<TensorObject*>& tensors, IndexCheck check);

// Whether `device` is being captured into a graph by this JS thread.
bool capturing(const Device& device);
// Throws when another JS thread is capturing `device`: a call from this one would land in its
// graph (the stream is the process's) without being recorded as this thread's.
void checkNotCapturedElsewhere(const Device& device);
// Brackets preparing and recording one sync call: beginCall forgets checks that a call which
// then failed, or was async, left behind; recordCall commits the prepared call's checks to the
// capture on `device` (if any) and has the graph keep `storages` — what the call reads and
// writes — alive for as long as the graph exists.
void beginCall();
void recordCall(const Device& device, const std::vector<std::shared_ptr<Storage>>& storages);

// Async calls in flight per device, counted on the JS thread: a capture may not start while
// one runs (its work would be recorded, and its wait would break the capture).
void asyncCallStarted(const Device& device);
void asyncCallEnded(const Device& device);

void RegisterGraphs(Napi::Env env, Napi::Object exports);

}  // namespace lt::addon
