// CUDA twin of native/cpu/decode.cpp: the decode-step ops of generation.
// attention_decode_forward: one block per query head h, reading KV head h / (NH/NKV); the
// block's threads score the cached positions, reduce max and sum, then each thread
// accumulates output channels. The cache is read once per token and query head:
// T * NH * hs * 8 bytes (the NH/NKV query heads of a KV head read the same rows, mostly from
// L2), small next to the weights the step also reads.
// head_logits_forward: one warp per vocabulary row (a GEMV), reading wte once: V * C * 4
// bytes per token, the floor of a decode step's head.
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "check.cuh"
#include "decode.h"

namespace plw::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void attention_decode_kernel(float* out,           // (NH * hs)
                                        const float* q,       // (NH * hs)
                                        const float* kcache,  // (S, row)
                                        const float* vcache,  // (S, row)
                                        int T, int row, int n_rep, int hs, float scale) {
    extern __shared__ float score[];  // T floats
    __shared__ float red[kThreads];
    const int h = blockIdx.x;
    const int kv = (h / n_rep) * hs;  // its KV head's channels in a cache row
    const float* qh = q + h * hs;
    float local_max = -FLT_MAX;
    for (int t = threadIdx.x; t < T; t += blockDim.x) {
        const float* k = kcache + static_cast<size_t>(t) * row + kv;
        float s = 0.0f;
        for (int i = 0; i < hs; i++) s += qh[i] * k[i];
        s *= scale;
        score[t] = s;
        local_max = fmaxf(local_max, s);
    }
    red[threadIdx.x] = local_max;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + stride]);
        __syncthreads();
    }
    const float m = red[0];
    __syncthreads();
    float local_sum = 0.0f;
    for (int t = threadIdx.x; t < T; t += blockDim.x) {
        const float e = expf(score[t] - m);
        score[t] = e;
        local_sum += e;
    }
    red[threadIdx.x] = local_sum;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) red[threadIdx.x] += red[threadIdx.x + stride];
        __syncthreads();
    }
    const float inv_z = 1.0f / red[0];
    for (int i = threadIdx.x; i < hs; i += blockDim.x) {
        float acc = 0.0f;
        for (int t = 0; t < T; t++) acc += score[t] * vcache[static_cast<size_t>(t) * row + kv + i];
        out[h * hs + i] = acc * inv_z;
    }
}

__global__ void head_logits_kernel(float* out, const float* x, const float* wte, int C, int V) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (warp >= V) return;
    const float* w = wte + static_cast<size_t>(warp) * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c] * w[c];
    for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) out[warp] = s;
}

}  // namespace

void attention_decode_forward(float* out, const float* q, const float* kcache, const float* vcache, int T,
                              int NH, int NKV, int hs) {
    PLW_CHECK(T > 0 && NH > 0 && NKV > 0 && NH % NKV == 0 && hs > 0,
              "attention_decode_forward: bad sizes T=" << T << " NH=" << NH << " NKV=" << NKV << " hs=" << hs
                                                       << " (NH must be a multiple of NKV)");
    PLW_CHECK(static_cast<int64_t>(NKV) * hs <= INT32_MAX, "attention_decode_forward: NKV * hs too large");
    const size_t smem = sizeof(float) * static_cast<size_t>(T);
    PLW_CHECK(smem <= 48 * 1024, "attention_decode_forward: T=" << T << " exceeds the 12288 cached positions one block scores");
    attention_decode_kernel<<<NH, kThreads, smem>>>(out, q, kcache, vcache, T, NKV * hs, NH / NKV, hs,
                                                    1.0f / sqrtf(static_cast<float>(hs)));
    PLW_CUDA_CHECK(cudaGetLastError());
}

void head_logits_forward(float* out, const float* x, const float* wte, int C, int V) {
    PLW_CHECK(C > 0 && V > 0, "head_logits_forward: bad sizes C=" << C << " V=" << V);
    const int warps_per_block = kThreads / 32;
    head_logits_kernel<<<(V + warps_per_block - 1) / warps_per_block, kThreads>>>(out, x, wte, C, V);
    PLW_CUDA_CHECK(cudaGetLastError());
}

}  // namespace plw::cuda
