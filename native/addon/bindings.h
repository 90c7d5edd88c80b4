// What each binding file adds to the module's exports, by op family. Every op comes as `name`
// (sync) and `nameAsync` (a Promise); the argument object each reads is typed in
// lib/runtime/native.ts. A binding reads that one object, checks every shape, dtype, device and
// index (throwing a JS Error that says what to fix), fills the kernel's params struct, and then
// runs it either here (sync) or on libuv's pool (async, a Promise): dispatch.h. Policy — which
// kernel, which pages, which layers — stays in TypeScript.
#pragma once
#include <napi.h>

namespace lt::addon {
// attention.cpp: prefillAttention, decodeAttention.
void RegisterAttention(Napi::Env env, Napi::Object exports);
// kv_cache.cpp: appendKv, cutToStreaming, gatherKv, ropeAppendKv.
void RegisterKvCache(Napi::Env env, Napi::Object exports);
// lazy_ratio.cpp: lazyRatio.
void RegisterLazyRatio(Napi::Env env, Napi::Object exports);
// layer_ops.cpp: linear, rmsNorm, rope, swiGlu, embedding; and gemmBackend() (no Async twin).
void RegisterLayerOps(Napi::Env env, Napi::Object exports);
// sampling.cpp: argmax, topCandidates, tokenLogprobs, repetitionPenalty.
void RegisterSampling(Napi::Env env, Napi::Object exports);
// pending_read.cpp: startRead, finishRead (sync only): Tensor.readLater.
void RegisterPendingReads(Napi::Env env, Napi::Object exports);
// cancel.cpp: cancelToken(), cancel(token): what an async call's AbortSignal sets (cancel.h).
void RegisterCancel(Napi::Env env, Napi::Object exports);
// devices.cpp: devices(), cudaStatus(), memoryUsage(), setThreads(), getThreads(), synchronize()
// (sync only).
void RegisterDevices(Napi::Env env, Napi::Object exports);
}  // namespace lt::addon
