#include "graph.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <string>

#include "cuda/cuda_backend.h"

namespace lt::addon {
namespace {

// A recorded call's bounds check and where its index tensors sit in the input (elements).
struct RecordedCheck {
  std::vector<size_t> offsets, counts;
  IndexCheck check;
};

// What a capture in progress, and then its graph, holds on to.
struct Recording {
  Device device;
  std::shared_ptr<Storage> input;
  const int32_t* inputData = nullptr;  // device address of the input's first element
  size_t inputCount = 0;
  std::vector<std::shared_ptr<Storage>> keepAlive;
  std::vector<RecordedCheck> checks;
  std::vector<RecordedCheck> pending;  // the checks of the call being prepared
  // What the input holds on the device, as last checked and copied. Launches that name the
  // ranges they changed update it in place and check it, handing each check the parts of its
  // tensors that changed, so the device never holds anything unchecked. Empty until the first
  // launch, which copies everything.
  std::vector<int32_t> mirror;
  IndexContents contents;  // reused by every launch's checks
};

// A graph ready to launch: the payload of the External that captureEnd returns.
struct GraphHandle {
  Recording recording;
  cuda::Graph* graph = nullptr;
};

// Captures in progress by CUDA device index, of this JS thread (the main thread or a
// worker_threads Worker, each with its own): its calls are prepared there.
std::map<int, std::unique_ptr<Recording>>& recordings() {
  thread_local std::map<int, std::unique_ptr<Recording>> r;
  return r;
}
// Async calls in flight per device, of every JS thread: the device's stream is the process's.
constexpr int kMaxDevices = 64;
std::atomic<int>& asyncInFlight(int device) {
  static std::array<std::atomic<int>, kMaxDevices> n{};
  if (device < 0 || device >= kMaxDevices)
    throw Error("CUDA device index " + std::to_string(device) + " is out of range");
  return n[size_t(device)];
}

Recording* recordingOn(const Device& device) {
  if (device.isCpu()) return nullptr;
  auto it = recordings().find(device.index);
  return it == recordings().end() ? nullptr : it->second.get();
}

// A device tensor's host shadow when it has one, else a copy read back (which waits for the
// device); a CPU tensor's memory as it is.
std::vector<int32_t> hostInts(TensorObject* t) {
  if (const std::vector<int32_t>* shadow = t->hostShadow()) return *shadow;
  std::vector<int32_t> host(size_t(numel(t->shape())));
  deviceCopy(host.data(), Device{}, t->data(), t->device(), host.size() * 4);
  return host;
}

void release(GraphHandle* g) {
  cuda::destroyGraph(g->graph);
  g->graph = nullptr;
  g->recording.keepAlive.clear();
  g->recording.input.reset();
  g->recording.checks.clear();
}

// Marks the Externals that hold a GraphHandle, so that another handle (a pending read's) passed
// where a graph is expected is refused rather than read as one.
constexpr napi_type_tag kGraphHandleTag = {0x4c54'6772'6170'6801ULL, 0x8e3b'1f6d'52a9'c407ULL};

// The graph handle in info[0]; throws naming `op` for anything else.
GraphHandle* taggedHandle(const Napi::CallbackInfo& info, const char* op) {
  if (info.Length() < 1 || !info[0].IsExternal() ||
      !info[0].As<Napi::External<GraphHandle>>().CheckTypeTag(&kGraphHandleTag))
    throw Error(std::string(op) + ": expected a graph handle (from captureEnd)");
  return info[0].As<Napi::External<GraphHandle>>().Data();
}

GraphHandle* handleOf(const Napi::CallbackInfo& info, const char* op) {
  GraphHandle* g = taggedHandle(info, op);
  if (g->graph == nullptr) throw Error(std::string(op) + ": this graph was disposed; capture a new one");
  return g;
}

// captureBegin({ input }): starts recording the kernel calls on input's device.
Napi::Value CaptureBegin(const Napi::CallbackInfo& info) {
  KernelArgs a("captureBegin", info);
  TensorObject* input = a.tensor("input");
  a.expectDType("input", input, DType::I32);
  const Device device = input->device();
  if (device.isCpu()) a.fail("input is on the CPU: a CUDA graph records work on a CUDA device");
  if (recordingOn(device)) a.fail(device.name() + " is already being captured; end that capture first");
  if (asyncInFlight(device.index) > 0)
    a.fail("async calls are still running on " + device.name() + "; await them before capturing");
  auto rec = std::make_unique<Recording>();
  rec->device = device;
  rec->input = input->storage();
  rec->inputData = static_cast<const int32_t*>(input->data());
  rec->inputCount = size_t(numel(input->shape()));
  input->dropShadow();
  cuda::beginCapture(device.index);
  recordings()[device.index] = std::move(rec);
  return info.Env().Undefined();
}

// captureEnd({ input, discard? }): the instantiated graph (an External), or undefined when
// discarded. Throws, discarding the capture, if a recorded call broke it.
Napi::Value CaptureEnd(const Napi::CallbackInfo& info) {
  KernelArgs a("captureEnd", info);
  TensorObject* input = a.tensor("input");
  const Device device = input->device();
  auto it = recordings().find(device.isCpu() ? -1 : device.index);
  if (it == recordings().end()) a.fail(device.name() + " is not being captured");
  if (it->second->input != input->storage()) a.fail("input is not the tensor this capture began with");
  std::unique_ptr<Recording> rec = std::move(it->second);
  recordings().erase(it);
  const Napi::Value discard = a.value("discard");
  if (discard.IsBoolean() && discard.As<Napi::Boolean>().Value()) {
    cuda::abortCapture(device.index);
    return info.Env().Undefined();
  }
  cuda::Graph* graph = cuda::endCapture(device.index);
  auto* handle = new GraphHandle{std::move(*rec), graph};
  auto external = Napi::External<GraphHandle>::New(info.Env(), handle, [](Napi::Env, GraphHandle* g) {
    release(g);
    delete g;
  });
  external.TypeTag(&kGraphHandleTag);
  return external;
}

// graphLaunch(handle, data: Int32Array, changed?: Int32Array): runs the recorded bounds checks,
// copies the new contents into the input and enqueues one replay. `changed` lists (start, count)
// pairs of elements that differ from the previous launch; only those are copied (the first
// launch, and the one after a failed check, copy all of data). Nothing reaches the device if a
// check fails.
Napi::Value GraphLaunch(const Napi::CallbackInfo& info) {
  GraphHandle* g = handleOf(info, "graphLaunch");
  Recording& rec = g->recording;
  if (rec.input->asyncWriters > 0)
    throw Error("graphLaunch: the graph's input is being written by an async call still in flight; await it first");
  auto isInt32Array = [](const Napi::Value& v) {
    return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array;
  };
  if (info.Length() < 2 || !isInt32Array(info[1])) throw Error("graphLaunch: data must be an Int32Array");
  Napi::Int32Array data = info[1].As<Napi::Int32Array>();
  if (data.ElementLength() != rec.inputCount)
    throw Error("graphLaunch: data has " + std::to_string(data.ElementLength()) +
                " elements but the graph's input holds " + std::to_string(rec.inputCount));
  const int32_t* host = data.Data();
  std::vector<std::pair<size_t, size_t>> ranges;
  if (rec.mirror.empty() || info.Length() < 3 || info[2].IsUndefined()) {
    ranges.emplace_back(0, rec.inputCount);
  } else {
    if (!isInt32Array(info[2])) throw Error("graphLaunch: changed must be an Int32Array of (start, count) pairs");
    Napi::Int32Array changed = info[2].As<Napi::Int32Array>();
    if (changed.ElementLength() % 2 != 0) throw Error("graphLaunch: changed must hold (start, count) pairs");
    for (size_t i = 0; i < changed.ElementLength(); i += 2) {
      const int64_t start = changed[i], count = changed[i + 1];
      if (start < 0 || count < 0 || uint64_t(start + count) > rec.inputCount)
        throw Error("graphLaunch: changed range (" + std::to_string(start) + ", " + std::to_string(count) +
                    ") is outside the input's " + std::to_string(rec.inputCount) + " elements");
      if (count > 0) ranges.emplace_back(size_t(start), size_t(count));
    }
  }
  // The input's new contents: no host shadow of any tensor over it holds any more.
  rec.input->writes++;
  // From the first change to the mirror on, anything thrown (a failed check, out of memory) must
  // clear it: the checks' record of what they passed holds only for a mirror equal to the device.
  try {
    rec.mirror.resize(rec.inputCount);
    for (auto [start, count] : ranges)
      std::copy(host + start, host + start + count, rec.mirror.begin() + ptrdiff_t(start));
    // In increasing order and apart, so that each tensor finds the ranges it overlaps by a search.
    std::sort(ranges.begin(), ranges.end());
    std::vector<std::pair<size_t, size_t>> apart;
    for (auto [start, count] : ranges) {
      if (!apart.empty() && start <= apart.back().first + apart.back().second)
        apart.back().second = std::max(apart.back().second, start + count - apart.back().first);
      else
        apart.emplace_back(start, count);
    }
    IndexContents& contents = rec.contents;
    for (const RecordedCheck& c : rec.checks) {
      contents.data.clear();
      contents.changed.resize(c.offsets.size());
      for (size_t i = 0; i < c.offsets.size(); i++) {
        const size_t begin = c.offsets[i], end = begin + c.counts[i];
        contents.data.push_back(rec.mirror.data() + begin);
        std::vector<std::pair<size_t, size_t>>& changed = contents.changed[i];
        changed.clear();
        auto r = std::partition_point(apart.begin(), apart.end(),
                                      [begin](const auto& range) { return range.first + range.second <= begin; });
        for (; r != apart.end() && r->first < end; ++r) {
          const size_t from = std::max(r->first, begin), to = std::min(r->first + r->second, end);
          if (from < to) changed.emplace_back(from - begin, to - from);
        }
      }
      c.check(contents);
    }
    for (auto [start, count] : apart)
      deviceCopy(const_cast<int32_t*>(rec.inputData) + start, rec.device, rec.mirror.data() + start, Device{},
                 count * sizeof(int32_t));
  } catch (...) {
    // The mirror may now differ from the device; the next launch copies everything again.
    rec.mirror.clear();
    throw;
  }
  cuda::launchGraph(g->graph);
  return info.Env().Undefined();
}

// graphDispose(handle): frees the graph now (waiting for its last replay); safe to call twice.
Napi::Value GraphDispose(const Napi::CallbackInfo& info) {
  release(taggedHandle(info, "graphDispose"));
  return info.Env().Undefined();
}

}  // namespace

std::vector<const int32_t*> checkIndices(KernelArgs& a, const std::vector<TensorObject*>& tensors, IndexCheck check) {
  for (TensorObject* t : tensors)
    if (t->storage()->asyncWriters > 0)
      a.fail(
          "an index tensor (a page table, slots, positions or token ids) is being written by an async call still "
          "in flight (readFile, or a ...Async kernel's output): await that call before the tensor is read as indices");
  std::vector<const int32_t*> kernelReads;
  Recording* rec = tensors.empty() ? nullptr : recordingOn(tensors.front()->device());
  if (rec == nullptr) {
    std::vector<std::vector<int32_t>> copies;
    copies.reserve(tensors.size());
    IndexContents contents;
    for (TensorObject* t : tensors) {
      copies.push_back(hostInts(t));
      contents.data.push_back(copies.back().data());
      contents.changed.emplace_back();
      if (!copies.back().empty()) contents.changed.back().emplace_back(0, copies.back().size());
    }
    check(contents);
    for (size_t i = 0; i < tensors.size(); i++) {
      // A sync CUDA call is queued on the stream before JS runs again and reads the tensor in
      // place; a CPU call reads the copy just checked, which it has anyway.
      if (a.mode() == CallMode::Sync && !tensors[i]->device().isCpu()) {
        kernelReads.push_back(static_cast<const int32_t*>(tensors[i]->data()));
      } else {
        auto snapshot = std::make_shared<IndexSnapshot>(tensors[i]->device(), std::move(copies[i]));
        kernelReads.push_back(snapshot->data());
        a.keepSnapshot(std::move(snapshot));
      }
    }
    return kernelReads;
  }
  RecordedCheck recorded;
  for (TensorObject* t : tensors) {
    const ptrdiff_t offset = static_cast<const int32_t*>(t->data()) - rec->inputData;
    if (t->storage() != rec->input || offset < 0 || size_t(offset) + size_t(numel(t->shape())) > rec->inputCount)
      a.fail("while " + rec->device.name() +
             " is being captured into a CUDA graph, index tensors must be views of the capture's input, "
             "whose contents every launch supplies and checks");
    recorded.offsets.push_back(size_t(offset));
    recorded.counts.push_back(size_t(numel(t->shape())));
    kernelReads.push_back(static_cast<const int32_t*>(t->data()));
  }
  recorded.check = std::move(check);
  rec->pending.push_back(std::move(recorded));
  return kernelReads;
}

bool capturing(const Device& device) {
  return recordingOn(device) != nullptr;
}

void checkNotCapturedElsewhere(const Device& device) {
  if (!device.isCpu() && cuda::capturing(device.index) && recordingOn(device) == nullptr)
    throw Error(device.name() +
                " is being captured into a CUDA graph by another JS thread; call it from that thread, " +
                "or once the capture has ended");
}

void beginCall() {
  for (auto& [index, rec] : recordings()) rec->pending.clear();
}

void recordCall(const Device& device, const std::vector<std::shared_ptr<Storage>>& storages) {
  Recording* rec = recordingOn(device);
  if (rec == nullptr) return;
  for (RecordedCheck& c : rec->pending) rec->checks.push_back(std::move(c));
  rec->pending.clear();
  rec->keepAlive.insert(rec->keepAlive.end(), storages.begin(), storages.end());
}

void asyncCallStarted(const Device& device) {
  if (!device.isCpu()) asyncInFlight(device.index)++;
}

void asyncCallEnded(const Device& device) {
  if (!device.isCpu()) asyncInFlight(device.index)--;
}

namespace {
// A JS thread that ends (a Worker terminated) in the middle of a capture ends the capture too:
// otherwise the device's stream would stay in capture mode, and every thread's calls on it fail.
void abortCapturesOfThisThread(void*) {
  for (auto& [device, rec] : recordings()) cuda::abortCapture(device);
  recordings().clear();
}
}  // namespace

void RegisterGraphs(Napi::Env env, Napi::Object exports) {
  napi_add_env_cleanup_hook(env, abortCapturesOfThisThread, nullptr);
  exports.Set("captureBegin", Napi::Function::New(env, CaptureBegin, "captureBegin"));
  exports.Set("captureEnd", Napi::Function::New(env, CaptureEnd, "captureEnd"));
  exports.Set("graphLaunch", Napi::Function::New(env, GraphLaunch, "graphLaunch"));
  exports.Set("graphDispose", Napi::Function::New(env, GraphDispose, "graphDispose"));
}

}  // namespace lt::addon
