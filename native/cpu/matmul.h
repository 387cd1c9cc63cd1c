// Single-precision GEMM, the CPU backend's matmul. Row-major throughout.
//   C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C
// op(A) = A (M,K), lda >= K, or, with trans_a, A^T where A is stored (K,M), lda >= M.
// op(B) = B (K,N), ldb >= N, or, with trans_b, B^T where B is stored (N,K), ldb >= K.
// beta == 0 means C is written without being read (it may hold NaN).
//
// Cache-blocked with packed panels and a register-tiled micro-kernel, threaded with
// OpenMP over blocks of M and N only: the K reduction of each C element is done by one
// thread in a fixed order, so results are bitwise identical for any thread count.
//
// Two kernels, chosen at run time (matmul.cpp): AVX-512 (14 x 32 tiles) where CPUID says the
// CPU and the OS support AVX-512F, else AVX2+FMA (6 x 16; the portable kernel when the build
// has no AVX2). PLW_CPU_KERNEL=avx2 in the environment forces the latter.
#pragma once

namespace plw::cpu {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

// The kernel the next sgemm call runs: "avx512 14x32", "avx2 6x16" or "generic 6x16".
const char* sgemm_kernel_name();
// Switches the kernel for the whole process: "avx512", "avx2" (this build's non-AVX-512 kernel,
// also accepted as "generic") or "auto" (AVX-512 where usable). False (nothing changed) for an
// unknown name or "avx512" where the CPU, the OS or the build lacks it. Not to be called while
// another thread is inside sgemm.
bool sgemm_set_kernel(const char* name);
// Whether the AVX-512 kernel can run here (built in, and CPU + OS support AVX-512F).
bool sgemm_has_avx512();
// The current kernel's tile (mr x nr) and cache blocking (kc, mc, nc), for reports.
void sgemm_blocking(int* mr, int* nr, int* kc, int* mc, int* nc);

}  // namespace plw::cpu
