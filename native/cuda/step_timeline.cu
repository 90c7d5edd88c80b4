// The step timeline's host side (step_timeline.cuh, the LT_STEP_TIMELINE build only): which graph
// launches it records, clearing the kernels' buffers before the first and writing them after the
// last.
#include "step_timeline.cuh"

#if defined(LT_STEP_TIMELINE) && LT_STEP_TIMELINE
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace lt::cuda {
namespace {

// Graph launch number `name` (LT_TIMELINE_FIRST or _LAST), from 1, or `otherwise` if unset.
int launchNumber(const char* name, int otherwise) {
  const char* v = std::getenv(name);
  if (v == nullptr) return otherwise;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || n < 1 || n > 1000000000L)
    throw Error(std::string("step timeline: ") + name + " must be a graph launch number from 1, got '" + v + "'");
  return int(n);
}

// The launches recorded, read once: none without LT_TIMELINE_FILE.
struct RecordedLaunches {
  const char* file = std::getenv("LT_TIMELINE_FILE");
  int first = file != nullptr ? launchNumber("LT_TIMELINE_FIRST", 1) : 0;
  int last = file != nullptr ? launchNumber("LT_TIMELINE_LAST", first) : 0;
};

const RecordedLaunches& recorded() {
  static const RecordedLaunches r = [] {
    RecordedLaunches r;
    if (r.last < r.first)
      throw Error("step timeline: LT_TIMELINE_LAST (" + std::to_string(r.last) + ") comes before LT_TIMELINE_FIRST (" +
                  std::to_string(r.first) + ")");
    return r;
  }();
  return r;
}

std::atomic<int> launches{0};  // graph launches so far, the one under way included

void checkCuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw Error(std::string("step timeline: ") + what + " failed: " + cudaGetErrorString(err));
}

}  // namespace

void timelineBeforeGraphLaunch(cudaStream_t stream) {
  const RecordedLaunches& r = recorded();
  if (++launches != r.first || r.file == nullptr) return;
  checkCuda(gemvTimelineReset(stream), "clearing the GEMV's records");
  checkCuda(attentionTimelineReset(stream), "clearing decode attention's records");
}

// A failure is reported on stderr, not thrown: the launch itself succeeded.
void timelineAfterGraphLaunch(cudaStream_t stream) {
  const RecordedLaunches& r = recorded();
  if (launches != r.last || r.file == nullptr) return;
  cudaError_t err = cudaStreamSynchronize(stream);
  std::FILE* f = err == cudaSuccess ? std::fopen(r.file, "w") : nullptr;
  if (f == nullptr) {
    std::fprintf(stderr, "step timeline: cannot write %s: %s\n", r.file,
                 err != cudaSuccess ? cudaGetErrorString(err) : "the file does not open");
    return;
  }
  err = gemvTimelineDump(f);
  if (err == cudaSuccess) err = attentionTimelineDump(f);
  const bool written = std::ferror(f) == 0;
  if (std::fclose(f) != 0 || !written || err != cudaSuccess)
    std::fprintf(stderr, "step timeline: writing %s failed%s%s\n", r.file, err != cudaSuccess ? ": " : "",
                 err != cudaSuccess ? cudaGetErrorString(err) : "");
}

}  // namespace lt::cuda
#endif
