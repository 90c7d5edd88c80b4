// Cancel tokens (cancel.h): an External holding the shared flag, tagged so that no other External
// is read as one.
#include "cancel.h"

#include "core/error.h"

namespace lt::addon {
namespace {

constexpr napi_type_tag kCancelTokenTag = {0x4c54'6361'6e63'656cULL, 0x9e3a'41c7'0b52'd68fULL};

Napi::Value CancelToken(const Napi::CallbackInfo& info) {
  auto* flag = new CancelFlag(std::make_shared<std::atomic<bool>>(false));
  auto token = Napi::External<CancelFlag>::New(info.Env(), flag, [](Napi::Env, CancelFlag* f) { delete f; });
  token.TypeTag(&kCancelTokenTag);
  return token;
}

CancelFlag* tokenAt(const Napi::Value& value) {
  if (!value.IsExternal() || !value.As<Napi::External<CancelFlag>>().CheckTypeTag(&kCancelTokenTag)) return nullptr;
  return value.As<Napi::External<CancelFlag>>().Data();
}

Napi::Value Cancel(const Napi::CallbackInfo& info) {
  CancelFlag* flag = info.Length() < 1 ? nullptr : tokenAt(info[0]);
  if (!flag) throw Error("cancel(token): expected a token from cancelToken()");
  (*flag)->store(true, std::memory_order_release);
  return info.Env().Undefined();
}

}  // namespace

CancelFlag cancelFlagOf(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return nullptr;
  CancelFlag* flag = tokenAt(info[index]);
  if (!flag) throw Error("an async call's second argument, if any, must be a token from cancelToken()");
  return *flag;
}

void RegisterCancel(Napi::Env env, Napi::Object exports) {
  exports.Set("cancelToken", Napi::Function::New(env, CancelToken, "cancelToken"));
  exports.Set("cancel", Napi::Function::New(env, Cancel, "cancel"));
}

}  // namespace lt::addon
