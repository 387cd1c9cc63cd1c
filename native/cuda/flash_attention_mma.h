// The tensor-core (mma.sync, sm_80+) kernels behind flash_attention.h's functions (bf16 on
// m16n8k16, f32 as tf32 on m16n8k8); see
// flash_attention_mma.cu. Not an entry point of its own: flash_attention.h's functions check
// the shapes and pointers, choose the path (flash_attention_uses_mma) and call these.
#pragma once
#include <cstdint>

namespace plw::cuda::detail {

// Shapes and strides as flash_attention.h (hs = 64, 80, 96 or 128, already checked; B > 0);
// raw bf16 bits or f32. scale = 1 / sqrt(hs) in f32, as the SIMT kernels take it.
void flash_attention_mma_forward(uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k,
                                 const uint16_t* v, const int32_t* segments, int B, int T, int NH,
                                 int NKV, int hs, int q_stride, int kv_stride, float scale);
void flash_attention_mma_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                 const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                                 int kv_stride, float scale);

// dsum: device scratch of flash_attention_scratch_bytes (B, NH, T) f32, written with D.
void flash_attention_mma_backward(uint16_t* dq, uint16_t* dk, uint16_t* dv, const uint16_t* dout,
                                  const uint16_t* out, const float* lse, float* dsum,
                                  const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                  const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                                  int q_stride, int kv_stride, float scale);
void flash_attention_mma_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                                  const float* lse, float* dsum, const float* q, const float* k, const float* v,
                                  const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                                  int kv_stride, float scale);

}  // namespace plw::cuda::detail
