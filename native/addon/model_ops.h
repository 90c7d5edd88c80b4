#pragma once
#include <napi.h>

namespace lt::addon {
// Adds linear, rmsNorm, rope, swiGlu, embedding and argmax (each with an ...Async twin) and
// gemmBackend() to `exports`.
void RegisterModelOps(Napi::Env env, Napi::Object exports);
}  // namespace lt::addon
