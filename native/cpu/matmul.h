// Single-precision GEMM, the CPU backend's matmul. Row-major throughout.
//   C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C
// op(A) = A (M,K), lda >= K, or, with trans_a, A^T where A is stored (K,M), lda >= M.
// op(B) = B (K,N), ldb >= N, or, with trans_b, B^T where B is stored (N,K), ldb >= K.
// beta == 0 means C is written without being read (it may hold NaN).
//
// Cache-blocked with packed panels and a register-tiled micro-kernel, threaded with
// OpenMP over blocks of M and N only: the K reduction of each C element is done by one
// thread in a fixed order, so results are bitwise identical for any thread count.
#pragma once

namespace plw::cpu {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace plw::cpu
