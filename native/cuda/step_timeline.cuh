// The step timeline, a diagnostic build (CMake LT_STEP_TIMELINE=ON; `LIGHTTRANSFER_STEP_TIMELINE=on
// npm run build:native` builds it into build-timeline/): every block of the decode step's GEMVs
// and decode attention writes when it entered, when its wait for the kernel ahead returned and
// when it left, read off the global timer, to a buffer of its kernel's file. launchGraph clears
// the buffers before graph launch LT_TIMELINE_FIRST and writes them, one block a line, to
// LT_TIMELINE_FILE after launch LT_TIMELINE_LAST (launches counted from 1 over the process);
// tools/gpu/step_timeline.py reads them. Each record costs an atomic and a 40-byte write per
// block, ~1-2% of a batch-1 step (bench/README.md). In every other build the macros below are
// empty and no buffer exists.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>

namespace lt::cuda {

struct TimelineEvent {
  unsigned long long key;  // what the launch reads (a weight, a page table): one per launch of a step
  unsigned int kind, block;
  unsigned long long enter, waited, exit;
};

// A block's times so far (kept by its thread 0).
struct BlockTimes {
  unsigned long long enter = 0, waited = 0;
};

__device__ __forceinline__ unsigned long long globalTimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

#if defined(LT_STEP_TIMELINE) && LT_STEP_TIMELINE

constexpr unsigned int kTimelineCapacity = 1u << 18;

// NAME's buffer and its host reset and dump, defined once in the kernel's file.
#define LT_TIMELINE_BUFFER(NAME)                                                                              \
  __device__ ::lt::cuda::TimelineEvent NAME##Events[::lt::cuda::kTimelineCapacity];                           \
  __device__ unsigned int NAME##Count;                                                                        \
  void NAME##Reset() {                                                                                        \
    const unsigned int zero = 0;                                                                              \
    cudaMemcpyToSymbol(NAME##Count, &zero, sizeof zero);                                                      \
  }                                                                                                           \
  void NAME##Dump(std::FILE* f) {                                                                             \
    unsigned int n = 0;                                                                                       \
    cudaMemcpyFromSymbol(&n, NAME##Count, sizeof n);                                                          \
    if (n > ::lt::cuda::kTimelineCapacity) n = ::lt::cuda::kTimelineCapacity;                                 \
    static ::lt::cuda::TimelineEvent host[::lt::cuda::kTimelineCapacity];                                     \
    cudaMemcpyFromSymbol(host, NAME##Events, sizeof(::lt::cuda::TimelineEvent) * n);                          \
    for (unsigned int i = 0; i < n; i++)                                                                      \
      std::fprintf(f, "%u %llx %u %llu %llu %llu\n", host[i].kind, host[i].key, host[i].block, host[i].enter, \
                   host[i].waited, host[i].exit);                                                             \
  }

#define LT_TIMELINE_ENTERED(TIMES) ((TIMES).enter = ::lt::cuda::globalTimer())
#define LT_TIMELINE_WAITED(TIMES) ((TIMES).waited = ::lt::cuda::globalTimer())
// Thread 0 of the block writes its record, leaving now.
#define LT_TIMELINE_RECORD(NAME, KIND, KEY, TIMES)                                          \
  do {                                                                                      \
    if (threadIdx.x == 0) {                                                                 \
      const unsigned int at = atomicAdd(&NAME##Count, 1u);                                  \
      if (at < ::lt::cuda::kTimelineCapacity)                                               \
        NAME##Events[at] = {(unsigned long long)(KEY),                                      \
                            (KIND),                                                         \
                            blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z), \
                            (TIMES).enter,                                                  \
                            (TIMES).waited,                                                 \
                            ::lt::cuda::globalTimer()};                                     \
    }                                                                                       \
  } while (0)

void gemvTimelineReset();
void gemvTimelineDump(std::FILE* f);
void attentionTimelineReset();
void attentionTimelineDump(std::FILE* f);

#else

#define LT_TIMELINE_BUFFER(NAME)
#define LT_TIMELINE_ENTERED(TIMES) ((void)(TIMES))
#define LT_TIMELINE_WAITED(TIMES) ((void)(TIMES))
#define LT_TIMELINE_RECORD(NAME, KIND, KEY, TIMES) ((void)(TIMES))

#endif

}  // namespace lt::cuda
