// The AVX-512 path of the SGEMM (matmul_avx512.cpp), internal to matmul.cpp, which owns the
// dispatch, the blocking and the threading. See matmul.cpp's header comment.
#pragma once

#include <cstddef>

namespace plw::cpu::avx512 {

constexpr int MR = 14;  // rows of the C tile: broadcasts of op(A)
constexpr int NR = 32;  // columns of the C tile: two zmm of op(B)

// True when the file was compiled with AVX-512F (x86-64 builds); whether the CPU has it is
// cpu_features()' business, checked by the caller before anything here runs.
bool compiled();

// Rows of the next A block when rows_left rows remain: mc_block, or all of them when they exceed it
// by at most a quarter (M = 256 at MC = 252 is one block, not 252 rows and a 4-row block that
// sweeps the whole B panel again for one thin strip).
int a_block_rows(int rows_left, int mc_block);
// The most rows a_block_rows ever gives: the pack buffer's height.
int a_block_max_rows(int mc_block);

// The blocked algorithm on C[m0:m1, n0:n1], single-threaded, as matmul.cpp's gemm_block, with
// the cache blocking passed in (kc, mc multiple of MR, nc multiple of NR) and the pack buffers
// given, both 64-byte aligned: Ap >= min(m1 - m0, a_block_max_rows(mc)) rounded up to MR,
// times min(kc, K) floats; Bp >= nc * min(kc, K) floats.
void gemm_block(bool trans_a, bool trans_b, int m0, int m1, int n0, int n1, int K, float alpha,
                const float* A, std::ptrdiff_t lda, const float* B, std::ptrdiff_t ldb, float beta,
                float* C, std::ptrdiff_t ldc, int kc_block, int mc_block, int nc_block, float* Ap, float* Bp);

}  // namespace plw::cpu::avx512
