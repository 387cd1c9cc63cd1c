// Op entry points exported to JS (registered in addon.cpp). Each validates its arguments
// on the JS thread, then queues a Job and returns its Promise.
#pragma once
#include <napi.h>

namespace plw::binding {

Napi::Value WeightedCrossEntropyForward(const Napi::CallbackInfo& info);
Napi::Value WeightedCrossEntropyBackward(const Napi::CallbackInfo& info);
Napi::Value FusedHeadCrossEntropyForward(const Napi::CallbackInfo& info);
Napi::Value FusedHeadCrossEntropyBackward(const Napi::CallbackInfo& info);
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info);
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info);
Napi::Value AdamW(const Napi::CallbackInfo& info);
Napi::Value Matmul(const Napi::CallbackInfo& info);
Napi::Value FlashAttentionForward(const Napi::CallbackInfo& info);
Napi::Value FlashAttentionBackward(const Napi::CallbackInfo& info);

}  // namespace plw::binding
