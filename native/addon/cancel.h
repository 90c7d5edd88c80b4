// Cancel tokens of async calls: an abort that comes while a call waits on libuv's pool stops it
// from running, so an aborted call leaves its outputs as they were. The token is shared between
// the JS object that holds it and every call it was given to, so dropping either is safe.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

namespace lt::addon {

using CancelFlag = std::shared_ptr<std::atomic<bool>>;

// The flag of a token passed as an async call's argument `index`, or null where none was passed;
// anything else there is an Error.
CancelFlag cancelFlagOf(const Napi::CallbackInfo& info, size_t index);

// The Error message a call that was cancelled before it ran rejects with.
inline constexpr const char* kCancelledBeforeRun = "lighttransfer: the call was cancelled before it ran";

// cancelToken(): a new token; cancel(token): sets it (what every call given it sees before it runs).
void RegisterCancel(Napi::Env env, Napi::Object exports);

}  // namespace lt::addon
