#pragma once
#include <napi.h>

namespace lt::addon {
// Adds prefillAttention, decodeAttention, appendKv, cutToStreaming and lazyRatio, each with
// an ...Async twin that returns a Promise, to `exports`.
void RegisterKernels(Napi::Env env, Napi::Object exports);
}  // namespace lt::addon
